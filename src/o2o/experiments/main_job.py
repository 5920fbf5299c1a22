"""The main job, ``o2o run``: the whole O2O-DRL pipeline on one scenario (paper V, Fig. 3-4).

1. **Heuristic control**: RATC runs in the simulator and every task is logged to the run's
   SQLite task log (``logs.db``).
2. **Offline training** (Algorithm 1) on transitions rebuilt from that log alone.
3. **Online fine-tuning** (Algorithm 2) from the offline actor and critic; and the baselines:
   offline-only (the offline actor as it is) and online-only (Algorithm 2 from random weights,
   the same number of environment steps).
4. **Evaluation** of every method on the same held-out episodes, which no training phase saw:
   random, local, RDA, RATC, ESF, central, the bound, offline-only, online-only, O2O-DRL.

Steps 2-3 run once per training seed, the seeds in parallel worker processes (one torch thread
each). Episode seeds of the phases never overlap: logs use 0.., online training the learner's
own ranges, learning-curve points ``CURVE_SEED0``.., the final evaluation ``EVAL_SEED0``...

Outputs in the run folder: ``results.json``, ``results.md``, ``learning_curve.png``,
``comparison.png``, ``logs.db``, ``models/<method>/seed<k>/`` (model folders),
``metrics/seed<k>/`` (JSON lines and TensorBoard).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from o2o.core.errors import UserError
from o2o.core.network import Network, sample_network
from o2o.core.scenario import Scenario

CURVE_SEED0 = 900_000
EVAL_SEED0 = 1_000_000
HEURISTICS = ("random", "local", "rda", "ratc", "esf", "central")
LEARNED = ("offline-only", "online-only", "o2o-drl")
METHODS = (*HEURISTICS[:2], "rda", "ratc", "esf", "central", *LEARNED)


@dataclass(frozen=True)
class Plan:
    """How much of each phase. ``full`` is the documented main job; ``quick`` a first look."""

    # The sizes chosen from the learner's measured curves (o2o.learn.settings, docs/learner.md).
    log_episodes: int = 300          # RATC episodes logged (600k task rows on paper-sim)
    offline_steps: int = 10_000      # gradient steps of Algorithm 1 (flat after ~6000)
    offline_points: int = 5          # learning-curve evaluations during offline training
    online_episodes: int = 400       # episodes of Algorithm 2 (O2O-DRL and online-only alike)
    online_eval_every: int = 80      # episodes between learning-curve evaluations online
    curve_episodes: int = 5          # episodes per learning-curve point
    eval_episodes: int = 10          # held-out episodes of the final comparison
    seeds: int = 3                   # training seeds

    def scaled(self, **changes) -> "Plan":
        return replace(self, **changes)


PLANS: dict[str, Plan] = {
    "full": Plan(),
    "quick": Plan(log_episodes=60, offline_steps=2_000, offline_points=4, online_episodes=64,
                  online_eval_every=16, curve_episodes=3, eval_episodes=10, seeds=2),
}


@dataclass
class SeedResult:
    """What one training seed produced (sent back from a worker process)."""

    seed: int
    offline_curve: list[dict[str, Any]]
    o2o_curve: list[dict[str, Any]]
    online_only_curve: list[dict[str, Any]]
    final: dict[str, list[float]]            # method -> success rate per evaluation episode
    seconds: dict[str, float] = field(default_factory=dict)


def _seed_job(args: dict[str, Any]) -> SeedResult:
    """Offline training, fine-tuning and online-only for one seed; saves the three models."""
    import torch

    from o2o.learn.evaluate import evaluate_policy, make_eval_fn
    from o2o.learn.offline import train_offline
    from o2o.learn.online import train_online
    from o2o.learn.policy import save_policy
    from o2o.learn.tracking import Tracker
    from o2o.logs.dataset import load_dataset

    torch.set_num_threads(1)
    scenario: Scenario = args["scenario"]
    network: Network = args["network"]
    plan: Plan = args["plan"]
    seed: int = args["seed"]
    out = Path(args["out"])
    curve_fn = make_eval_fn(scenario, network, range(CURVE_SEED0, CURVE_SEED0 + plan.curve_episodes))
    eval_seeds = list(range(EVAL_SEED0, EVAL_SEED0 + plan.eval_episodes))
    dataset = load_dataset(args["dataset"])
    seconds: dict[str, float] = {}

    def save(method: str, actor, critic, info: dict[str, Any]) -> None:
        save_policy(str(out / "models" / method / f"seed{seed}"), actor, critic,
                    training={"method": method, "seed": seed, **info})

    final: dict[str, list[float]] = {}
    with Tracker(out / "metrics" / f"seed{seed}") as tracker:
        offline_settings = args["offline_settings"].model_copy(
            update={"eval_every": max(1, plan.offline_steps // max(plan.offline_points, 1))})
        offline_curve: list[dict[str, Any]] = []

        def offline_callback(step: int, actor) -> dict[str, Any]:
            point = {"step": step, **curve_fn(actor)}
            offline_curve.append(point)
            return point

        start = time.perf_counter()
        offline = train_offline(dataset, offline_settings, seed=seed, steps=plan.offline_steps,
                                callback=offline_callback, tracker=tracker, show_progress=seed == 0)
        seconds["offline"] = time.perf_counter() - start
        save("offline-only", offline.actor, offline.critic, {"steps": plan.offline_steps})
        final["offline-only"] = evaluate_policy(scenario, network, offline.actor, eval_seeds)["success_rate"].tolist()

        start = time.perf_counter()
        o2o = train_online(scenario, network, offline.actor, offline.critic, args["online_settings"],
                           episodes=plan.online_episodes, seed=seed, eval_every=plan.online_eval_every,
                           eval_fn=curve_fn, reward_stats=offline.reward_stats, tracker=tracker,
                           show_progress=seed == 0, desc="o2o")
        seconds["online"] = time.perf_counter() - start
        save("o2o-drl", o2o.actor, o2o.critic, {"online_episodes": o2o.episodes})
        final["o2o-drl"] = evaluate_policy(scenario, network, o2o.actor, eval_seeds)["success_rate"].tolist()

        start = time.perf_counter()
        scratch = train_online(scenario, network, None, None, args["online_settings"],
                               episodes=plan.online_episodes, seed=seed, eval_every=plan.online_eval_every,
                               eval_fn=curve_fn, tracker=tracker, show_progress=seed == 0, desc="online_only")
        seconds["online_only"] = time.perf_counter() - start
        save("online-only", scratch.actor, scratch.critic, {"online_episodes": scratch.episodes})
        final["online-only"] = evaluate_policy(scenario, network, scratch.actor, eval_seeds)["success_rate"].tolist()
    return SeedResult(seed, offline_curve, o2o.curve, scratch.curve, final, seconds)


def t_interval(values) -> tuple[float, float, float]:
    from o2o.learn.evaluate import mean_ci95

    return mean_ci95(values)


def summarize_methods(heuristic_rates: dict[str, np.ndarray], learned: list[SeedResult],
                      bound: float) -> dict[str, Any]:
    """``results.json`` content: per method the mean success rate and a 95% CI.

    Learned methods: the rate of each evaluation episode is averaged over the training seeds,
    and the CI (Student's t) is over the evaluation episodes, as for the heuristics, so every
    method is measured on the same episodes; ``per_seed`` and ``ci95_seeds`` (over the seed
    means) show the spread between training seeds. ``vs_ratc``: the paired difference per
    episode against RATC with its CI."""
    per_episode: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in heuristic_rates.items()}
    per_seed: dict[str, list[float]] = {}
    for method in LEARNED:
        rows = np.array([r.final[method] for r in learned])  # (seeds, episodes)
        per_episode[method] = rows.mean(axis=0)
        per_seed[method] = rows.mean(axis=1).tolist()
    results: dict[str, Any] = {}
    for method in METHODS:
        x = per_episode[method]
        mean, lo, hi = t_interval(x)
        entry: dict[str, Any] = {"success_rate": mean, "ci95": [lo, hi], "episodes": int(x.size)}
        if method in per_seed:
            _, slo, shi = t_interval(per_seed[method])
            entry.update(per_seed=per_seed[method], ci95_seeds=[slo, shi])
        d_mean, d_lo, d_hi = t_interval(x - per_episode["ratc"])
        entry["vs_ratc"] = {"diff": d_mean, "ci95": [d_lo, d_hi]}
        results[method] = entry
    results["bound"] = bound
    return results


def cold_start(learned: list[SeedResult]) -> dict[str, Any]:
    """First online evaluations (after the first update) against the offline-only level."""
    def first_after_update(curve):
        after = [p for p in curve if p["episodes"] > 0]
        return after[0] if after else None

    out = {"offline_only": [r.offline_curve[-1]["success_rate"] for r in learned if r.offline_curve],
           # Online-only before its first update: the random initialisation.
           "online_only_start": [r.online_only_curve[0]["success_rate"] for r in learned
                                 if r.online_only_curve and r.online_only_curve[0]["episodes"] == 0]}
    for name, attr in (("o2o_first_online", "o2o_curve"), ("online_only_first", "online_only_curve")):
        points = [first_after_update(getattr(r, attr)) for r in learned]
        out[name] = [p["success_rate"] for p in points if p is not None]
        out[name + "_episodes"] = points[0]["episodes"] if points and points[0] else None
    for key in ("offline_only", "o2o_first_online", "online_only_start", "online_only_first"):
        mean, lo, hi = t_interval(out[key]) if out[key] else (float("nan"),) * 3
        out[key + "_mean"], out[key + "_ci95"] = mean, [lo, hi]
    return out


def format_results(results: dict[str, Any]) -> str:
    lines = ["| method | success rate | 95% CI | vs RATC (paired) |", "|---|---|---|---|"]
    for method in METHODS:
        r = results[method]
        d = r["vs_ratc"]
        lines.append(f"| {method} | {r['success_rate']:.4f} | [{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}] | "
                     f"{d['diff']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] |")
    lines.append(f"| bound | {results['bound']:.4f} | | |")
    return "\n".join(lines)


def plot_learning_curve(path: Path, learned: list[SeedResult], results: dict[str, Any]) -> None:
    """Paper Fig. 3: offline phase, then online success rate of O2O-DRL against online-only,
    with the heuristics as horizontal lines. Lines: mean over seeds; bands: min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_off, ax_on) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True,
                                        gridspec_kw={"width_ratios": [1, 2]})

    def band(ax, curves, xkey, label, color):
        if not curves or not curves[0]:
            return
        xs = [p[xkey] for p in curves[0]]
        ys = np.array([[p["success_rate"] for p in c][:len(xs)] for c in curves])
        ax.plot(xs, ys.mean(axis=0), color=color, label=label, marker="o", ms=3)
        ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), color=color, alpha=0.2)

    band(ax_off, [r.offline_curve for r in learned], "step", "O2O-DRL (offline phase)", "tab:blue")
    band(ax_on, [r.o2o_curve for r in learned], "episodes", "O2O-DRL (online fine-tuning)", "tab:blue")
    band(ax_on, [r.online_only_curve for r in learned], "episodes", "online-only", "tab:red")
    styles = {"ratc": "tab:green", "rda": "tab:orange", "esf": "tab:purple", "random": "tab:gray",
              "local": "tab:brown", "central": "black"}
    for ax in (ax_off, ax_on):
        for name, color in styles.items():
            ax.axhline(results[name]["success_rate"], color=color, ls="--", lw=1,
                       label=name if ax is ax_on else None)
        ax.grid(alpha=0.3)
    ax_on.axhline(results["offline-only"]["success_rate"], color="tab:blue", ls=":", lw=1,
                  label="offline-only (final)")
    ax_off.set_xlabel("offline gradient steps")
    ax_on.set_xlabel("online episodes")
    ax_off.set_ylabel("task success rate")
    fig.legend(*ax_on.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=6,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Learning curve on the learning-curve episodes (mean over training seeds, band: min-max);\n"
                 "dashed lines: the heuristics on the held-out comparison episodes", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_comparison(path: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    means = [results[m]["success_rate"] for m in METHODS]
    err = np.array([[results[m]["success_rate"] - results[m]["ci95"][0],
                     results[m]["ci95"][1] - results[m]["success_rate"]] for m in METHODS]).T
    colors = ["tab:gray"] * len(HEURISTICS) + ["tab:cyan", "tab:red", "tab:blue"]
    ax.bar(METHODS, means, yerr=err, color=colors, capsize=3)
    ax.axhline(results["bound"], color="black", ls="--", lw=1, label="bound")
    lo = min(means) - 0.05
    ax.set_ylim(max(0.0, lo), 1.0)
    ax.set_ylabel("task success rate (95% CI)")
    ax.legend()
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_pipeline(scenario: Scenario, out: Path, plan: Plan, *, network_seed: int = 0,
                 offline_settings=None, online_settings=None, workers: int | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole pipeline into ``out`` and return ``results.json``'s content."""
    from o2o.core.episodes import sample_episodes
    from o2o.core.progress import progress_bar
    from o2o.learn.settings import project_offline_settings, project_online_settings
    from o2o.logs.collect import collect
    from o2o.logs.dataset import build_dataset, save_dataset
    from o2o.logs.store import LogStore
    from o2o.sim import episode_bound, make_scheduler
    from o2o.sim.rollout import simulate

    offline_settings = offline_settings or project_offline_settings()
    online_settings = online_settings or project_online_settings()
    out = Path(out)
    if (out / "results.json").exists():
        raise UserError(f"{out} already holds a finished run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    network = sample_network(scenario, network_seed)
    timing: dict[str, float] = {}
    started = time.perf_counter()

    # 1. Heuristic control: RATC logs.
    start = time.perf_counter()
    with LogStore.open(out / "logs.db", create=True) as store:
        with progress_bar(total=plan.log_episodes, desc="RATC logs", unit="episode") as bar:
            logged = collect(store, scenario, network, make_scheduler("ratc"), "ratc",
                             range(plan.log_episodes), network_seed=network_seed, progress=bar.update)
        dataset = build_dataset(store, [logged.run_id], reward_credit=online_settings.reward_credit)
    dataset_path = out / "dataset.npz"
    save_dataset(dataset, dataset_path)
    del dataset
    timing["collect_logs"] = time.perf_counter() - start
    log(f"logged {logged.episodes} RATC episodes ({logged.task_rows} task rows, success rate "
        f"{logged.success_rate:.4f}) in {timing['collect_logs']:.1f} s")

    # 2-3. Offline training, fine-tuning, online-only: one job per training seed.
    start = time.perf_counter()
    jobs = [{"scenario": scenario, "network": network, "plan": plan, "seed": k, "out": str(out),
             "dataset": str(dataset_path), "offline_settings": offline_settings,
             "online_settings": online_settings} for k in range(plan.seeds)]
    workers = max(1, min(workers or os.cpu_count() or 1, plan.seeds))
    learned: list[SeedResult] = []
    with progress_bar(total=plan.seeds, desc=f"training ({workers} workers)", unit="seed") as bar:
        if workers == 1:
            for job in jobs:
                learned.append(_seed_job(job))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(_seed_job, jobs):
                    learned.append(result)
                    bar.update(1)
    timing["training_wall"] = time.perf_counter() - start
    for phase in ("offline", "online", "online_only"):
        timing[f"{phase}_per_seed"] = float(np.mean([r.seconds[phase] for r in learned]))
    dataset_path.unlink()  # rebuilt from logs.db at any time with `o2o dataset export`

    # 4. The comparison on held-out episodes.
    start = time.perf_counter()
    eval_seeds = list(range(EVAL_SEED0, EVAL_SEED0 + plan.eval_episodes))
    heuristic_rates = {name: simulate(scenario, network, eval_seeds, make_scheduler(name))["success_rate"]
                       for name in HEURISTICS}
    bound = float(episode_bound(network, sample_episodes(scenario, network, eval_seeds)).mean())
    timing["evaluate"] = time.perf_counter() - start
    timing["total"] = time.perf_counter() - started

    results = summarize_methods(heuristic_rates, learned, bound)
    report = {
        **results,
        "cold_start": cold_start(learned),
        "timing_s": timing,
        "plan": asdict(plan),
        "scenario": scenario.model_dump(mode="json"),
        "network_seed": network_seed,
        "evaluation_seeds": eval_seeds,
        "offline_settings": offline_settings.model_dump(mode="json"),
        "online_settings": online_settings.model_dump(mode="json"),
        "curves": [{"seed": r.seed, "offline": r.offline_curve, "o2o": r.o2o_curve,
                    "online_only": r.online_only_curve} for r in learned],
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    table = format_results(results)
    (out / "results.md").write_text(
        f"# O2O-DRL on {scenario.name}\n\n{plan.eval_episodes} held-out episodes, {plan.seeds} "
        f"training seeds, network seed {network_seed}.\n\n{table}\n")
    plot_learning_curve(out / "learning_curve.png", learned, results)
    plot_comparison(out / "comparison.png", results)
    log(table)
    log("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items()))
    return report
