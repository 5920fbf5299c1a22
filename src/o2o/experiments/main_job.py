"""The main job, ``o2o run``: the whole O2O-DRL pipeline on one scenario (paper V, Fig. 3-4).

1. **Heuristic control**: RATC runs in the simulator and every task is logged to the run's
   SQLite task log (``logs.db``).
2. **Offline training** (Algorithm 1) on transitions rebuilt from that log alone.
3. **Online fine-tuning** (Algorithm 2) from the offline actor and critic; and the baselines:
   offline-only (the offline actor as it is) and online-only (Algorithm 2 from random weights,
   the same number of environment steps).
4. **Evaluation** of every method on the same held-out episodes, which no training phase saw:
   random, local, RDA, RATC, ESF, spread and slack-reliable (both tuned for this network on
   validation episodes, ``o2o.experiments.tuning``, or from ``--tuned`` files), central and its
   two greedy variants, both bounds, offline-only, online-only, O2O-DRL; each with its probes
   per task.

Steps 2-3 run once per training seed, the seeds in parallel worker processes (one torch thread
each). Episode seeds of the phases never overlap (``o2o.core.seeds``): logs from ``LOGS``,
online training from ``online(k)``, learning-curve points from ``VALIDATION``, the final
evaluation from ``TEST``.

The cold start in numbers (``o2o.experiments.deployment``): every online training episode as its
users got it, against the logging heuristic run on the same episodes (``deployment``).

Outputs in the run folder: ``results.json``, ``results.md``, ``learning_curve.png``,
``deployment.png``, ``comparison.png``, ``logs.db``, ``models/<method>/seed<k>/`` (model folders),
``metrics/seed<k>/`` (JSON lines and TensorBoard).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from o2o.core import seeds
from o2o.core.decpomdp import probes_per_decision
from o2o.core.errors import UserError
from o2o.core.metrics import json_safe
from o2o.core.network import sample_network
from o2o.core.progress import progress_bar
from o2o.core.provenance import environment
from o2o.core.scenario import Scenario, scenario_from_dict
from o2o.experiments.deployment import deployment_report, deployment_section, plot_deployment, resummarize
from o2o.experiments.methods import (
    HEURISTICS,
    LEARNED,
    PLANS,
    Plan,
    SeedJob,
    SeedResult,
    heuristic_rates,
    log_dataset,
    train_seeds,
)
from o2o.experiments.report import (
    cold_start,
    format_results,
    plot_comparison,
    plot_learning_curve,
    summarize_methods,
)
from o2o.experiments.tuning import check_tuned, logging_params, summary, tuned_rules
from o2o.learn.evaluate import evaluate_policy
from o2o.learn.settings import LearnerSettings, learner_settings
from o2o.models import load_model
from o2o.sim import mean_bounds

__all__ = ["PLANS", "Plan", "rebuild_report", "run_pipeline"]


def learned_probes(n: int, obs_layout: str) -> dict[str, tuple[int, str]]:
    """The probes per task of the learned methods: those their observation layout implies."""
    return {m: probes_per_decision(n, obs_layout) for m in LEARNED}


def run_pipeline(scenario: Scenario, out: Path, plan: Plan, *, network_seed: int = 0,
                 settings: LearnerSettings | None = None, workers: int | None = None,
                 tuned: dict[str, dict[str, Any]] | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole pipeline into ``out`` and return ``results.json``'s content. ``tuned``:
    tuning records of ``--tuned`` files by rule; the other tunable rules are tuned here."""
    settings = settings or learner_settings("project")
    out = Path(out)
    if (out / "results.json").exists():
        raise UserError(f"{out} already holds a finished run; choose another --out")
    for record in (tuned or {}).values():
        check_tuned(record, scenario, network_seed)
    out.mkdir(parents=True, exist_ok=True)
    network = sample_network(scenario, network_seed)
    timing: dict[str, float] = {}
    started = time.perf_counter()

    # 0. The compared rules' parameters, tuned for this network on validation episodes.
    start = time.perf_counter()
    tuning = tuned_rules(HEURISTICS, scenario, network, network_seed=network_seed, given=tuned)
    timing["tune"] = time.perf_counter() - start
    for name, record in tuning.items():
        log(f"{name}: " + ", ".join(f"{k}={v:g}" for k, v in record["params"].items())
            + f" (validation success rate {record['validation_score']:.4f}, defaults "
            f"{record['default_score']:.4f}; {record['source']})")

    # 1. Heuristic control: the logging heuristic's task logs (RATC, as in the paper, by default).
    start = time.perf_counter()
    heuristic = settings.log_heuristic
    log_params = logging_params(heuristic, settings.log_tuned, scenario, network,
                                network_seed=network_seed, tuning=tuning)
    dataset_path = out / "dataset.npz"
    with progress_bar(total=plan.log_episodes, desc=f"{heuristic} logs", unit="episode") as bar:
        logged = log_dataset(scenario, network, heuristic, plan.log_episodes, out / "logs.db",
                             dataset_path, network_seed=network_seed,
                             reward_credit=settings.reward_credit, obs_layout=settings.obs_layout,
                             progress=bar.update, params=log_params)
    timing["collect_logs"] = time.perf_counter() - start
    if log_params:
        log(f"the logging heuristic {heuristic} runs at its tuned values")
    log(f"logged {logged.episodes} {heuristic} episodes ({logged.task_rows} task rows, success rate "
        f"{logged.success_rate:.4f}) in {timing['collect_logs']:.1f} s")

    # 2-3. Offline training, fine-tuning, online-only: one job per training seed.
    start = time.perf_counter()
    jobs = [SeedJob(scenario, network, plan, k, str(out), str(dataset_path), settings)
            for k in range(plan.seeds)]
    with progress_bar(total=plan.seeds, desc="training", unit="seed") as bar:
        learned = train_seeds(jobs, workers, progress=bar.update)
    timing["training_wall"] = time.perf_counter() - start
    for phase in ("offline", "online", "online_only"):
        timing[f"{phase}_per_seed"] = float(np.mean([r.seconds[phase] for r in learned]))
    dataset_path.unlink()  # rebuilt from logs.db at any time with `o2o dataset export`

    # The cold start in numbers: the logging heuristic on each seed's online episodes.
    start = time.perf_counter()
    deployment = deployment_report(scenario, network, learned, heuristic,
                                   window=min(settings.online.episodes_per_batch, plan.online_episodes))
    timing["deployment_reference"] = time.perf_counter() - start

    # 4. The comparison on held-out episodes.
    start = time.perf_counter()
    eval_seeds = seeds.TEST.take(plan.eval_episodes)
    rates, probes = heuristic_rates(scenario, network, eval_seeds,
                                    params={k: v["params"] for k, v in tuning.items()})
    timing["evaluate"] = time.perf_counter() - start
    start = time.perf_counter()
    bounds = mean_bounds(scenario, network, eval_seeds)
    timing["bounds"] = time.perf_counter() - start
    timing["total"] = time.perf_counter() - started

    results = summarize_methods(rates, learned, bounds["bound"], bounds["bound-task"],
                                probes={**probes, **learned_probes(network.n, settings.obs_layout)})
    results["tuned"] = {k: summary(v) for k, v in tuning.items()}
    report = {
        **results,
        "cold_start": cold_start(learned),
        "deployment": deployment,
        "timing_s": timing,
        "plan": asdict(plan),
        "scenario": scenario.model_dump(mode="json"),
        "network_seed": network_seed,
        "evaluation_seeds": eval_seeds,
        # the offline steps the run took: the plan's where it gives them, else the settings' own
        "settings": settings.model_copy(update={"offline_steps": plan.offline_steps or settings.offline_steps})
                            .model_dump(mode="json"),
        "curves": [{"seed": r.seed, "offline": r.offline_curve, "o2o": r.o2o_curve,
                    "online_only": r.online_only_curve} for r in learned],
        # learned rows drift between CPUs and library builds: say where they were computed
        "environment": environment(),
    }
    (out / "results.json").write_text(json.dumps(json_safe(report), indent=2))
    table = format_results(results)
    (out / "results.md").write_text(
        f"# O2O-DRL on {scenario.name}\n\n{plan.eval_episodes} held-out episodes, {plan.seeds} "
        f"training seeds, network seed {network_seed}.\n\n{table}\n\n{deployment_section(deployment)}")
    plot_learning_curve(out / "learning_curve.png", learned, results)
    plot_deployment(out / "deployment.png", deployment)
    plot_comparison(out / "comparison.png", results)
    log(table)
    log(deployment_section(deployment))
    log("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()))
    return report


def rebuild_report(out: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Recompute a finished run's comparison from its saved models: every method evaluated
    again on the run's held-out episodes (deterministic: the same numbers), with the paired
    differences of O2O-DRL to every other method. Writes nothing: the run's files stay as the
    run wrote them (the numbers are the same)."""

    out = Path(out)
    path = out / "results.json"
    if not out.is_dir():
        raise UserError(f"--run {out}: no such folder; give the folder of a finished 'o2o run'")
    if not path.exists():
        raise UserError(f"{out} holds no finished run (results.json is missing)")
    try:
        report = json.loads(path.read_text())
        scenario = scenario_from_dict(report["scenario"])
        network = sample_network(scenario, report["network_seed"])
        eval_seeds = report["evaluation_seeds"]
        curves = report["curves"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not the results file of a finished 'o2o run' ({exc!r})") from None
    learned = []
    for curve in curves:
        k = curve["seed"]
        final = {m: evaluate_policy(scenario, network, load_model(str(out / "models" / m / f"seed{k}"),
                                                                   nodes=network.n),
                                    eval_seeds)["success_rate"].tolist() for m in LEARNED}
        learned.append(SeedResult(k, curve["offline"], curve["o2o"], curve["online_only"], final))
    tuned = report.get("tuned", {})
    rates, probes = heuristic_rates(scenario, network, eval_seeds,
                                    params={k: v["params"] for k, v in tuned.items()})
    obs_layout = report.get("settings", {}).get("obs_layout", learner_settings("project").obs_layout)
    results = summarize_methods(rates, learned, report["bound"], report.get("bound-task"),
                                probes={**probes, **learned_probes(network.n, obs_layout)})
    results["tuned"] = tuned
    report.update(results)
    section = ""
    if "deployment" in report:  # runs made before the cold start was counted have none
        report["deployment"] = resummarize(report["deployment"])
        section = "\n" + deployment_section(report["deployment"])
    log(format_results(results) + section)
    return json_safe(report)
