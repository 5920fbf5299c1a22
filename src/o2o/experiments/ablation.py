"""``o2o ablation``: what each of the project's changes to O2O-DRL adds, on the same episodes.

The task logs of each logging heuristic (RATC, spread, tuned slack-reliable) are collected once; then each rung of
the ladder below trains offline-only and O2O-DRL (offline, then online fine-tuning) for every
training seed and evaluates them on the same held-out episodes (``TEST``), next to RATC,
``spread`` and ``slack-reliable`` (both tuned for the network on validation episodes) and the
centralized reference, each method with its probes per task. Each rung adds one change to the rung above it:

=========================  ==================================================================
rung                       settings
=========================  ==================================================================
paper                      the paper's Algorithms 1-2 and hyper-parameters (``--settings
                           paper``): team reward by end slot, observation v1, plain actor
+ alpha, batch, decision   the first project version: alpha 0.2, batch 512, team reward
                           credited to the decision's slot
+ node credit              each node's own outcome as its reward (credit assignment)
+ observation v2           what a node probes at its decision (plain MLP actor)
+ scorer actor             one network scores every candidate destination
+ gamma 0.9                a shorter horizon (both phases)
+ AWR offline              advantage-weighted regression instead of SAC + CQL
+ spread logs              offline training on the logs of ``spread`` instead of RATC (= the
                           project settings, ``--settings project``)
+ central critic           the critics also see the slot's global state (CTDE)
+ tuned slack-reliable     (on the project rung, not on the central critic) offline training on
  logs                     the logs of ``slack-reliable`` at its values tuned for the network on
                           validation episodes: the strongest rule with the learner's information
+ counterfactual credit    each node's own outcome minus the harm its decision did to other
                           tasks, measured by replaying the episode without it
=========================  ==================================================================
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from o2o.core import seeds
from o2o.core.decpomdp import probes_per_decision
from o2o.core.errors import UserError
from o2o.core.metrics import format_probes, mean_ci95
from o2o.core.network import sample_network
from o2o.core.progress import progress_bar
from o2o.core.scenario import Scenario
from o2o.experiments.methods import Plan, SeedJob, heuristic_rates, train_seeds
from o2o.experiments.tuning import logging_params, summary, tuned_rules
from o2o.learn.evaluate import evaluate_policy
from o2o.learn.policy import Policy
from o2o.learn.settings import LearnerSettings, learner_settings
from o2o.logs.collect import collect
from o2o.logs.dataset import build_dataset, save_dataset
from o2o.logs.store import LogStore
from o2o.sim import make_scheduler

# (label, preset, reward credit, observation layout, log heuristic, offline and online
# overrides[, whether the log heuristic runs at its tuned values])
SCORER = ["actor_head=scorer", "hidden=[32, 32]"]
RUNGS: list[tuple] = [
    ("paper", "paper", None, None, None, [], []),
    ("+ alpha, batch, decision credit", "paper", "decision", None, None,
     ["alpha=0.2", "batch_size=512"], []),
    ("+ node credit", "paper", "node", None, None, ["alpha=0.2", "batch_size=512"], []),
    ("+ observation v2", "paper", "node", "o2o-obs-v2", None, ["alpha=0.2", "batch_size=512"], []),
    ("+ scorer actor", "paper", "node", "o2o-obs-v2", None,
     ["alpha=0.2", "batch_size=512", *SCORER], SCORER),
    ("+ gamma 0.9", "paper", "node", "o2o-obs-v2", None,
     ["alpha=0.2", "batch_size=512", *SCORER, "gamma=0.9"], [*SCORER, "gamma=0.9"]),
    ("+ AWR offline", "project", None, None, "ratc", [], []),
    ("+ spread logs (project)", "project", None, None, None, [], []),
    ("+ central critic", "project", None, None, None, ["critic_input=central"],
     ["critic_input=central"]),
    ("+ tuned slack-reliable logs", "project", None, None, "slack-reliable", [], [], True),
    ("+ counterfactual credit", "project", "counterfactual", None, "slack-reliable", [], [], True),
]
COMPARED = ("ratc", "spread", "slack-reliable", "central")   # spread and slack-reliable tuned


def rung_settings(rung) -> LearnerSettings:
    _, preset, credit, layout, heuristic, offline, online, *tuned = rung
    return learner_settings(preset, offline, online, credit, layout, heuristic,
                            log_tuned=bool(tuned and tuned[0]))


def dataset_key(s: LearnerSettings) -> tuple:
    return (s.log_heuristic, s.log_tuned, s.reward_credit, s.obs_layout)


def run_ablation(scenario: Scenario, out: Path, plan: Plan, *, network_seed: int = 0,
                 workers: int | None = None, rungs: list[int] | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    out = Path(out)
    if (out / "ablation.json").exists():
        raise UserError(f"{out} already holds a finished ablation; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    network = sample_network(scenario, network_seed)
    chosen = list(range(len(RUNGS))) if rungs is None else rungs
    eval_seeds = seeds.TEST.take(plan.eval_episodes)
    started = time.perf_counter()
    tuning = tuned_rules(COMPARED, scenario, network, network_seed=network_seed)
    with LogStore.open(out / "logs.db", create=True) as store:
        runs: dict[tuple[str, bool], int] = {}
        datasets: dict[tuple, str] = {}
        for k in chosen:
            s = rung_settings(RUNGS[k])
            teacher = (s.log_heuristic, s.log_tuned)
            if teacher not in runs:
                params = logging_params(s.log_heuristic, s.log_tuned, scenario, network,
                                        network_seed=network_seed, tuning=tuning)
                with progress_bar(total=plan.log_episodes, desc=f"{s.log_heuristic} logs", unit="episode") as bar:
                    runs[teacher] = collect(store, scenario, network, make_scheduler(s.log_heuristic, params),
                                            s.log_heuristic, seeds.LOGS.take(plan.log_episodes),
                                            network_seed=network_seed, progress=bar.update).run_id
            key = dataset_key(s)
            if key not in datasets:
                tuned = "-tuned" if s.log_tuned else ""
                path = out / f"dataset-{s.log_heuristic}{tuned}-{s.reward_credit}-{s.obs_layout}.npz"
                save_dataset(build_dataset(store, [runs[teacher]], s.reward_credit,
                                           obs_layout=s.obs_layout), path)
                datasets[key] = str(path)
    heuristics, probes = heuristic_rates(scenario, network, eval_seeds, COMPARED,
                                         params={k: v["params"] for k, v in tuning.items()})
    ratc, rule = heuristics["ratc"], heuristics["slack-reliable"]
    validation_seeds = seeds.VALIDATION.take(plan.eval_episodes)
    validation = heuristic_rates(scenario, network, validation_seeds, COMPARED,
                                 params={k: v["params"] for k, v in tuning.items()})[0]
    rows: list[dict[str, Any]] = []
    for k in chosen:
        label = RUNGS[k][0]
        s = rung_settings(RUNGS[k])
        folder = out / f"rung{k}"
        jobs = [SeedJob(scenario, network, plan, seed, str(folder),
                        datasets[dataset_key(s)], s,
                        online_only=False)
                for seed in range(plan.seeds)]
        start = time.perf_counter()
        learned = train_seeds(jobs, workers)
        count, what = probes_per_decision(network.n, s.obs_layout)
        row: dict[str, Any] = {"rung": label, "seconds": time.perf_counter() - start,
                               "settings": s.model_dump(mode="json"),
                               "probes_per_task": count, "probes_note": what}
        for method in ("offline-only", "o2o-drl"):
            per_seed = np.array([r.final[method] for r in learned])   # (seeds, episodes)
            episode_mean = per_seed.mean(axis=0)
            mean, lo, hi = mean_ci95(episode_mean)
            d, dlo, dhi = mean_ci95(episode_mean - ratc)
            row[method] = {"success_rate": mean, "ci95": [lo, hi], "vs_ratc": [d, dlo, dhi],
                           "vs_rule": list(mean_ci95(episode_mean - rule)),
                           "per_seed": per_seed.mean(axis=1).tolist(),
                           # The same models on validation episodes: what a choice between the
                           # rungs may be made on (the held-out columns are for reporting).
                           "validation": float(np.mean([
                               evaluate_policy(scenario, network, Policy.load(
                                   str(folder / "models" / method / f"seed{r.seed}"))[0].actor,
                                   validation_seeds)["success_rate"].mean() for r in learned]))}
        rows.append(row)
        log(f"{label}: offline-only {row['offline-only']['success_rate']:.4f}, O2O-DRL "
            f"{row['o2o-drl']['success_rate']:.4f} ({row['o2o-drl']['vs_ratc'][0]:+.4f} vs RATC)")
    report = {"network_seed": network_seed, "plan": plan.__dict__, "evaluation_seeds": eval_seeds,
              "heuristics": {k: float(np.mean(v)) for k, v in heuristics.items()},
              "validation_seeds": validation_seeds,
              "heuristics_validation": {k: float(np.mean(v)) for k, v in validation.items()},
              "heuristic_probes": probes, "tuned": {k: summary(v) for k, v in tuning.items()},
              "rungs": rows, "seconds": time.perf_counter() - started}
    (out / "ablation.json").write_text(json.dumps(report, indent=2))
    table = format_ablation(report)
    (out / "ablation.md").write_text(table + "\n")
    for path in datasets.values():
        Path(path).unlink()
    log(table)
    return report


def format_ablation(report: dict[str, Any]) -> str:
    h = report["heuristics"]
    probes = report.get("heuristic_probes", {})
    tuned = report.get("tuned", {})

    def method(name: str) -> str:
        extra = [f"{format_probes(probes[name])} probes/task"] if name in probes else []
        if name in tuned:
            extra.append("tuned: " + ", ".join(f"{k}={v:g}" for k, v in tuned[name]["params"].items()))
        return f"{name} {h[name]:.4f}" + (f" ({'; '.join(extra)})" if extra else "")

    hv = report.get("heuristics_validation", {})
    lines = [", ".join(method(name) for name in h)
             + f" (network seed {report['network_seed']}, {len(report['evaluation_seeds'])} held-out "
             f"episodes, {report['plan']['seeds']} training seeds)", ""]
    if hv:
        lines += ["On the validation episodes (where a rung may be chosen): "
                  + ", ".join(f"{name} {rate:.4f}" for name, rate in hv.items()), ""]
    lines += ["| rung | O2O-DRL, validation | offline-only | O2O-DRL | O2O-DRL - RATC (paired, 95% CI) "
              "| O2O-DRL - slack-reliable (paired, 95% CI) | share of the RATC-central gap | probes/task |",
              "|---|---|---|---|---|---|---|---|"]
    gap = h["central"] - h["ratc"]
    for row in report["rungs"]:
        o, f = row["o2o-drl"], row["offline-only"]
        d = o["vs_ratc"]
        r = o.get("vs_rule")
        vs_rule = f"{r[0]:+.4f} [{r[1]:+.4f}, {r[2]:+.4f}]" if r else ""
        val = f"{o['validation']:.4f}" if "validation" in o else ""
        count = f"{row['probes_per_task']} ({row['probes_note']})" if "probes_per_task" in row else ""
        lines.append(f"| {row['rung']} | {val} | {f['success_rate']:.4f} | {o['success_rate']:.4f} | "
                     f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}] | {vs_rule} | {d[0] / gap:.0%} | {count} |")
    return "\n".join(lines)
