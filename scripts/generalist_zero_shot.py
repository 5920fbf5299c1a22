"""The generalist model, run as it is, against the schedulers of each network (issue: one
scheduler for any network). Nothing is trained here: the generalist's training network seeds are
1000 and above, so every network below is one it never saw.

    PYTHONPATH=src python scripts/generalist_zero_shot.py MODEL_DIR [--json OUT] [--extra-network 7]
        [--markdown]

* the main job's networks 0, 1, 2 (N = 20, paper-sim): the 20 held-out episodes of
  ``docs/results/main-netS.json``, paired per episode with the tuned same-information rule
  (slack-reliable, tuned on that network's validation episodes), the per-network O2O-DRL
  (3 training seeds), RATC, spread (tuned) and central of that file;
* one more network (``--extra-network``, default 7), tuned here on its validation episodes (no
  per-network model: that needs a main job on it);
* every point of figures 5a, 5b, 5c and 6 (network 0; N = 10..50 in fig6): the 10 held-out
  episodes of ``docs/img/figures/NAME.json`` (quick plan), paired with that point's tuned rule
  and its per-network O2O-DRL (2 training seeds, quick plan).

Each row: the generalist's success rate and, paired per episode (95% Student-t), the generalist
minus each reference. ``--markdown`` prints the rows again at the end as a Markdown table (the
one in docs/learner.md). ``--rule-grid wide`` tunes slack-reliable again at every row on the
wider grid of ``scripts/wider_rule_grid.py`` (``o2o.experiments.tuning.WIDE_GRIDS``; on that
row's validation episodes, as ``o2o tune``) and pairs the generalist with that rule instead of
the one in the files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario, scenario_from_dict
from o2o.core.seeds import TEST
from o2o.experiments.tuning import WIDE_GRIDS, tune_rule
from o2o.schedulers.drl import DRLRule
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ("slack-reliable", "o2o-drl", "ratc", "spread", "central")
FIGURES = ("fig5a", "fig5b", "fig5c", "fig6")


def row(label: str, general: np.ndarray, refs: dict[str, np.ndarray]) -> dict:
    out = {"point": label, "episodes": len(general), "generalist": float(general.mean())}
    for name, rates in refs.items():
        d, lo, hi = mean_ci95(general - rates)
        out[name] = {"success_rate": float(rates.mean()), "generalist_minus": [d, lo, hi]}
    return out


def show(r: dict) -> str:
    cells = [f"{r['point']:<28}{r['episodes']:>4}{r['generalist']:>9.4f}"]
    for name in REFERENCES:
        if name in r:
            d, lo, hi = r[name]["generalist_minus"]
            cells.append(f"{r[name]['success_rate']:.4f} ({d:+.4f} [{lo:+.4f}, {hi:+.4f}])")
        else:
            cells.append("-")
    return "  ".join(cells)


def markdown(rows: list[dict]) -> str:
    def cells(r: dict, name: str, paired: bool) -> list[str]:
        if name not in r:
            return ["-", "-"] if paired else ["-"]
        d, lo, hi = r[name]["generalist_minus"]
        rate = f"{r[name]['success_rate']:.4f}"
        return [rate, f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]"] if paired else [rate]

    lines = ["| point | episodes | generalist | tuned slack-reliable | generalist − it | per-network O2O-DRL "
             "| generalist − it | RATC | spread (tuned) | central |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        row_cells = [r["point"], str(r["episodes"]), f"{r['generalist']:.4f}", *cells(r, "slack-reliable", True),
                     *cells(r, "o2o-drl", True), *cells(r, "ratc", False), *cells(r, "spread", False),
                     *cells(r, "central", False)]
        lines.append("| " + " | ".join(row_cells) + " |")
    return "\n".join(lines)


def generalist_rates(model: str, scenario, network, seeds) -> np.ndarray:
    return simulate(scenario, network, seeds, DRLRule.from_model(model, scenario, network))["success_rate"]


def summary(rows: list[dict], against: str = "slack-reliable") -> str:
    """One line over all points (the figures' default point counts once per figure, as in the
    table): the generalist's mean, and at how many points its paired CI against ``against`` lies
    wholly below or above 0, with its worst difference."""
    diffs = [(r[against]["generalist_minus"], r["point"]) for r in rows]
    below = sum(hi < 0 for (_, _, hi), _ in diffs)
    above = sum(lo > 0 for (_, lo, _), _ in diffs)
    (worst, _, _), where = min(diffs, key=lambda d: d[0][0])
    return (f"over the {len(rows)} points: generalist mean {np.mean([r['generalist'] for r in rows]):.4f}; "
            f"against {against}: CI below 0 at {below}, above 0 at {above}, worst {worst:+.4f} ({where})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--json", default=None)
    parser.add_argument("--extra-network", type=int, default=7)
    parser.add_argument("--markdown", action="store_true", help="print the rows as a Markdown table too")
    parser.add_argument("--rule-grid", choices=("shipped", "wide"), default="shipped",
                        help="the grid slack-reliable is tuned on (wide: o2o.experiments.tuning.WIDE_GRIDS)")
    args = parser.parse_args()

    def rule(refs: dict, scenario, network, network_seed: int, seeds) -> dict:
        """refs with slack-reliable tuned on the wide grid, where asked for."""
        if args.rule_grid == "shipped":
            return refs
        params = tune_rule(scenario, network, "slack-reliable", network_seed=network_seed,
                           grid=WIDE_GRIDS["slack-reliable"])["params"]
        rates = simulate(scenario, network, seeds, make_scheduler("slack-reliable", params))["success_rate"]
        return {**refs, "slack-reliable": rates}

    rows = []
    print(f"{'point':<28}{'eps':>4}{'general':>9}  " + "  ".join(
        f"{n} (generalist − it [95% CI])" for n in REFERENCES))
    for s in (0, 1, 2):
        results = json.loads((ROOT / f"docs/results/main-net{s}.json").read_text())
        scenario = scenario_from_dict(results["scenario"])
        network = sample_network(scenario, s)
        seeds = results["evaluation_seeds"]
        refs = rule({n: np.asarray(results[n]["per_episode"]) for n in REFERENCES}, scenario, network, s, seeds)
        rows.append(row(f"network {s}, N 20", generalist_rates(args.model, scenario, network, seeds), refs))
        print(show(rows[-1]), flush=True)
    # A network nobody looked at: the rule tuned on its validation episodes, the rest run here.
    s = args.extra_network
    scenario = load_scenario("paper-sim")
    network = sample_network(scenario, s)
    seeds = TEST.take(20)
    tuned = {n: tune_rule(scenario, network, n, network_seed=s)["params"] for n in ("slack-reliable", "spread")}
    refs = rule({n: simulate(scenario, network, seeds, make_scheduler(n, tuned.get(n)))["success_rate"]
                 for n in ("slack-reliable", "ratc", "spread", "central")}, scenario, network, s, seeds)
    rows.append(row(f"network {s}, N 20 (new)", generalist_rates(args.model, scenario, network, seeds), refs))
    print(show(rows[-1]), flush=True)
    for figure in FIGURES:
        data = json.loads((ROOT / f"docs/img/figures/{figure}.json").read_text())
        for point in data["points"]:
            scenario = load_scenario("paper-sim", [f"{data['field']}={json.dumps(point['value'])}"])
            network = sample_network(scenario, data["network_seed"])
            seeds = TEST.take(data["eval_episodes"])
            refs = rule({n: np.asarray(point["methods"][n]["per_episode"]) for n in REFERENCES},
                        scenario, network, data["network_seed"], seeds)
            label = f"{figure} {data['field']}={point['value']}"
            rows.append(row(label, generalist_rates(args.model, scenario, network, seeds), refs))
            print(show(rows[-1]), flush=True)
    print(summary(rows), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "rule_grid": args.rule_grid, "rows": rows},
                                              indent=1))
    if args.markdown:
        print(markdown(rows))


if __name__ == "__main__":
    main()
