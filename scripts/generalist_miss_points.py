"""Where the generalist, run as it is, falls below the tuned same-information rule: is that the
generalist's shortfall, or a level no learner reaches there, and does fine-tuning it on that
network close it? (issue: one scheduler for any network.)

    PYTHONPATH=src python scripts/generalist_miss_points.py POINT=RUN,FINETUNED_DIR [...]
        [--model pretrained:general] [--json OUT] [--markdown]

POINT names the case: a scenario override of ``paper-sim`` (``nodes=50``,
``task_size_kb=[1000,10000]``), or any label (``paper-sim``); the scenario and the network are
read from RUN, an ``o2o run`` of that case (its folder or its ``results.json``) with the best
per-network setting found against the rule (counterfactual credit, the rule tuned on validation
episodes as the logging heuristic, 8000 offline steps; ``docs/learner.md``, "Against the tuned
same-information rule"):

    o2o run --seeds 1 --eval-episodes 10 --network-seed 0 --set POINT --reward-credit counterfactual \\
        --log-heuristic slack-reliable --log-tuned --offline-steps 8000 --out RUN_DIR

and FINETUNED_DIR the generalist fine-tuned online on that network, with the command's defaults
for a generalist (counterfactual credit, a 2-update critic warm-up, lr 1e-3; 400 episodes):

    o2o train online --model pretrained:general --set POINT --network-seed 0 --episodes 400 --out FINETUNED_DIR

(the same network seed and scenario as RUN).

Both are scored on the run's held-out episodes (its ``evaluation_seeds``; with
``--eval-episodes 10`` the first 10 TEST episodes, those of the figures' quick plans and of
``scripts/generalist_zero_shot.py``). Each row
pairs per episode (95% Student-t) the generalist as it is and the fine-tuned generalist with the
run's tuned ``slack-reliable`` and its O2O-DRL. ``--score validation`` scores instead on 20
VALIDATION episodes against the run's rule at its tuned values (the run's O2O-DRL is left out):
where the fine-tuning credit was chosen.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from generalist_zero_shot import generalist_rates as rates
from o2o.core.errors import UserError
from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.scenario import scenario_from_dict
from o2o.core.seeds import VALIDATION
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

REFERENCES = ("slack-reliable", "o2o-drl")
VALIDATION_EPISODES = VALIDATION.take(20, 100)


def paired(a: np.ndarray, b: np.ndarray) -> list[float]:
    return list(mean_ci95(a - b))


def results_file(run: str) -> Path:
    path = Path(run)
    return path / "results.json" if path.is_dir() else path


def point_row(point: str, run: Path, finetuned: str, model: str, validation: bool = False) -> dict:
    results = json.loads(run.read_text())
    scenario = scenario_from_dict(results["scenario"])
    network = sample_network(scenario, results["network_seed"])
    if validation:   # the rule at the run's tuned values; the run's O2O-DRL was not kept in its results
        seeds = VALIDATION_EPISODES
        rule = make_scheduler("slack-reliable", results["tuned"]["slack-reliable"]["params"])
        refs = {"slack-reliable": simulate(scenario, network, seeds, rule)["success_rate"]}
    else:
        seeds = results["evaluation_seeds"]
        refs = {name: np.asarray(results[name]["per_episode"]) for name in REFERENCES}
    ours = {"generalist": rates(model, scenario, network, seeds),
            "fine-tuned": rates(finetuned, scenario, network, seeds)}
    row = {"point": point, "network_seed": results["network_seed"], "run": str(run), "finetuned": finetuned,
           "score": "validation" if validation else "held-out", "episodes": len(seeds),
           "slack-reliable": float(refs["slack-reliable"].mean())}
    if "o2o-drl" in refs:
        row["o2o-drl"] = float(refs["o2o-drl"].mean())
        row["o2o-drl_minus_rule"] = paired(refs["o2o-drl"], refs["slack-reliable"])
    for name, r in ours.items():
        row[name] = float(r.mean())
        for ref, rr in refs.items():
            row[f"{name}_minus_{ref}"] = paired(r, rr)
    return row


def fmt(ci: list[float] | None) -> str:
    return "-" if ci is None else f"{ci[0]:+.4f} [{ci[1]:+.4f}, {ci[2]:+.4f}]"


def markdown(rows: list[dict]) -> str:
    lines = ["| network: point | tuned slack-reliable | per-network O2O-DRL (− rule) | generalist as it is "
             "(− rule; − O2O-DRL) | generalist fine-tuned, 400 episodes (− rule; − O2O-DRL) |",
             "|---|---|---|---|---|"]
    for r in rows:
        drl = f"{r['o2o-drl']:.4f} ({fmt(r['o2o-drl_minus_rule'])})" if "o2o-drl" in r else "-"
        lines.append(
            f"| {r['network_seed']}: {r['point']} | {r['slack-reliable']:.4f} | {drl} "
            f"| {r['generalist']:.4f} ({fmt(r['generalist_minus_slack-reliable'])}; "
            f"{fmt(r.get('generalist_minus_o2o-drl'))}) "
            f"| {r['fine-tuned']:.4f} ({fmt(r['fine-tuned_minus_slack-reliable'])}; "
            f"{fmt(r.get('fine-tuned_minus_o2o-drl'))}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("points", nargs="+", metavar="POINT=RUN,FINETUNED_DIR")
    p.add_argument("--model", default="pretrained:general", help="the generalist (default pretrained:general)")
    p.add_argument("--score", choices=["test", "validation"], default="test",
                   help="score on the run's held-out episodes (test), or on 20 VALIDATION episodes "
                        "(900100..900119, as scripts/learner_screen.py) against the run's tuned rule, "
                        "where fine-tuning settings are chosen")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--markdown", action="store_true", help="print the rows as a Markdown table")
    a = p.parse_args(argv)
    jobs = []
    for arg in a.points:
        point, sep, dirs = arg.rpartition("=")
        run, comma, finetuned = dirs.partition(",")
        if not sep or not comma or not point:
            p.error(f"{arg!r}: give POINT=RUN,FINETUNED_DIR, e.g. nodes=50=runs/n50,models/ft50")
        if not results_file(run).is_file():
            p.error(f"{results_file(run)} not found: run the o2o run command of this script's help first")
        if not (Path(finetuned) / "manifest.json").is_file():
            p.error(f"{finetuned}/manifest.json not found: run the o2o train online command of this script's help first")
        try:
            results = json.loads(results_file(run).read_text())
            where = (results["network_seed"], results["scenario"]["nodes"])
        except (ValueError, KeyError, TypeError):
            p.error(f"{results_file(run)} is not the results.json of an o2o run")
        manifest = json.loads((Path(finetuned) / "manifest.json").read_text())
        tuned_on = (manifest.get("training", {}).get("network_seed"), manifest.get("nodes"))
        if tuned_on[0] is not None and tuned_on != where:   # None: not trained on one network
            p.error(f"{finetuned} was fine-tuned on network seed {tuned_on[0]} at N = {tuned_on[1]}, "
                    f"{run} ran network seed {where[0]} at N = {where[1]}: pair a run with the "
                    "model fine-tuned on its network")
        jobs.append((point, results_file(run), finetuned))
    rows = []
    for point, run, finetuned in jobs:
        try:
            r = point_row(point, run, finetuned, a.model, a.score == "validation")
        except UserError as err:   # a model that refuses this scenario or N (ModelError)
            p.exit(2, f"error: {err}\n")
        rows.append(r)
        drl = f", O2O-DRL {r['o2o-drl']:.4f} ({fmt(r['o2o-drl_minus_rule'])})" if "o2o-drl" in r else ""
        print(f"network {r['network_seed']}, {point} ({r['score']}, {r['episodes']} episodes): rule {r['slack-reliable']:.4f}{drl}, "
              f"generalist {r['generalist']:.4f} (− rule {fmt(r['generalist_minus_slack-reliable'])}, "
              f"− O2O-DRL {fmt(r.get('generalist_minus_o2o-drl'))}), "
              f"fine-tuned {r['fine-tuned']:.4f} (− rule {fmt(r['fine-tuned_minus_slack-reliable'])}, "
              f"− O2O-DRL {fmt(r.get('fine-tuned_minus_o2o-drl'))})", flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"model": a.model, "rows": rows}, indent=1) + "\n")
    if a.markdown:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
