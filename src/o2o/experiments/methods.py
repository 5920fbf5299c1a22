"""The methods of a comparison: the heuristics on the held-out episodes, and the three learned
methods of one training seed (paper V-C): offline-only (Algorithm 1's actor as it is), O2O-DRL
(that actor and critic fine-tuned by Algorithm 2) and online-only (Algorithm 2 from random
weights on the same online episodes). Training seeds run in worker processes, one torch thread
each.

Episode seeds come from the named ranges of ``o2o.core.seeds``: the offline data from ``LOGS``,
learning-curve points from ``VALIDATION``, the final comparison from ``TEST``, online training
from ``online(k)``.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from o2o.core import seeds
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.experiments.deployment import online_episodes
from o2o.learn.evaluate import evaluate_policy, make_eval_fn
from o2o.learn.offline import train_offline
from o2o.learn.online import train_online
from o2o.learn.policy import Policy
from o2o.learn.settings import LearnerSettings
from o2o.learn.tracking import Tracker
from o2o.logs.collect import CollectResult, collect
from o2o.logs.dataset import build_dataset, load_dataset, save_dataset
from o2o.logs.store import LogStore
from o2o.models import scenario_ranges
from o2o.sim import make_scheduler
from o2o.sim.rollout import probes_per_task, simulate

#: The centralized references (simulator only): the planner and its two greedy rules.
CENTRAL_METHODS = ("central", "central-reliable", "central-earliest")
HEURISTICS = ("random", "local", "rda", "ratc", "esf", "spread", "slack-reliable", *CENTRAL_METHODS)
LEARNED = ("offline-only", "online-only", "o2o-drl")
METHODS = (*HEURISTICS, *LEARNED)


@dataclass(frozen=True)
class Plan:
    """How much of each phase. ``full`` is the documented main job; ``quick`` a first look."""

    # The sizes chosen from the learner's measured curves (o2o.learn.settings, docs/learner.md).
    log_episodes: int = 300          # RATC episodes logged (600k task rows on paper-sim)
    offline_steps: int | None = None  # offline gradient steps; None: the settings' own
                                      # (LearnerSettings.offline_steps, from learning curves)
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
    # method -> its online training episodes as collected: {"seeds", "tasks", "success"}
    online_episodes: dict[str, dict[str, list[int]]] = field(default_factory=dict)


@dataclass(frozen=True)
class SeedJob:
    """Everything one training seed needs (sent to a worker process)."""

    scenario: Scenario
    network: Network
    plan: Plan
    seed: int
    out: str                     # the run folder: models/ and metrics/ go there
    dataset: str                 # the offline data set (.npz)
    settings: LearnerSettings
    online_only: bool = True     # also train the online-only baseline (the ablation does not)
    name: str = ""               # a label for the models' and metrics' folders
    show_progress: bool = True   # progress bars of seed 0 (off where a sweep draws its own)


def train_seed(job: SeedJob) -> SeedResult:
    """Offline training, fine-tuning and online-only for one training seed, each evaluated on
    the held-out episodes; saves the three models and the training metrics."""
    torch.set_num_threads(1)
    scenario, network, plan, seed = job.scenario, job.network, job.plan, job.seed
    out = Path(job.out)
    show = job.show_progress and seed == 0
    curve_fn = make_eval_fn(scenario, network, seeds.VALIDATION.take(plan.curve_episodes))
    eval_seeds = seeds.TEST.take(plan.eval_episodes)
    dataset = load_dataset(job.dataset)
    seconds: dict[str, float] = {}

    def save(method: str, policy: Policy, info: dict[str, Any]) -> None:
        policy.save(str(out / "models" / method / f"seed{seed}"),
                    training={"method": method, "seed": seed, **info},
                    trained_ranges=scenario_ranges(scenario))

    final: dict[str, list[float]] = {}
    with Tracker(out / "metrics" / f"seed{seed}") as tracker:
        steps = plan.offline_steps or job.settings.offline_steps
        offline_settings = job.settings.offline.model_copy(
            update={"eval_every": max(1, steps // max(plan.offline_points, 1))})
        offline_curve: list[dict[str, Any]] = []

        def offline_callback(step: int, actor) -> dict[str, Any]:
            point = {"step": step, **curve_fn(actor)}
            offline_curve.append(point)
            return point

        start = time.perf_counter()
        offline = train_offline(dataset, offline_settings, seed=seed, steps=steps,
                                callback=offline_callback, tracker=tracker, show_progress=show)
        seconds["offline"] = time.perf_counter() - start
        save("offline-only", offline.policy, {"steps": steps})
        final["offline-only"] = evaluate_policy(scenario, network, offline.policy.actor, eval_seeds)["success_rate"].tolist()

        start = time.perf_counter()
        o2o = train_online(scenario, network, offline.policy, job.settings.online,
                           episodes=plan.online_episodes, seed=seed, eval_every=plan.online_eval_every,
                           eval_fn=curve_fn, tracker=tracker, show_progress=show, desc="o2o")
        seconds["online"] = time.perf_counter() - start
        save("o2o-drl", o2o.policy, {"online_episodes": o2o.episodes})
        final["o2o-drl"] = evaluate_policy(scenario, network, o2o.policy.actor, eval_seeds)["success_rate"].tolist()

        if not job.online_only:
            return SeedResult(seed, offline_curve, o2o.curve, [], final, seconds,
                              {"o2o-drl": online_episodes(o2o)})
        start = time.perf_counter()
        scratch = train_online(scenario, network, None, job.settings.online,
                               episodes=plan.online_episodes, seed=seed, eval_every=plan.online_eval_every,
                               eval_fn=curve_fn, tracker=tracker, show_progress=show,
                               desc="online_only", reward_credit=job.settings.reward_credit,
                               obs_layout=job.settings.obs_layout)
        seconds["online_only"] = time.perf_counter() - start
        save("online-only", scratch.policy, {"online_episodes": scratch.episodes})
        final["online-only"] = evaluate_policy(scenario, network, scratch.policy.actor, eval_seeds)["success_rate"].tolist()
    return SeedResult(seed, offline_curve, o2o.curve, scratch.curve, final, seconds,
                      {"o2o-drl": online_episodes(o2o), "online-only": online_episodes(scratch)})


def log_dataset(scenario: Scenario, network: Network, heuristic: str, episodes: int, db: str | Path,
                dataset: str | Path, *, network_seed: int, reward_credit: str, obs_layout: str,
                progress: Callable[[int], None] | None = None,
                params: dict[str, float] | None = None) -> CollectResult:
    """Heuristic control (paper IV-C1): ``heuristic`` runs on the first ``episodes`` seeds of
    ``LOGS`` (with ``params``, a tunable rule's values, where given) and every task is logged
    to the task log ``db``; the offline data set is rebuilt from that log alone and saved to
    ``dataset`` (.npz)."""
    with LogStore.open(db, create=True) as store:
        logged = collect(store, scenario, network, make_scheduler(heuristic, params), heuristic,
                         seeds.LOGS.take(episodes), network_seed=network_seed, progress=progress)
        data = build_dataset(store, [logged.run_id], reward_credit=reward_credit,
                             obs_layout=obs_layout)
    save_dataset(data, dataset)
    return logged


def heuristic_rates(scenario: Scenario, network: Network, eval_seeds: list[int], names=HEURISTICS,
                    params: dict[str, dict[str, float]] | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, float | str]]:
    """Per-episode success rates of each heuristic (and central) on the evaluation episodes,
    and each one's probes per task (``o2o.sim.rollout.probes_per_task``). A tunable rule runs
    with its ``params`` (its tuned values) where given."""
    rates, probes = {}, {}
    for name in names:
        metrics = simulate(scenario, network, eval_seeds, make_scheduler(name, (params or {}).get(name)))
        rates[name], probes[name] = metrics["success_rate"], probes_per_task(metrics)
    return rates, probes


def train_seeds(jobs: list[SeedJob], workers: int | None = None,
                progress: Callable[[int], None] | None = None) -> list[SeedResult]:
    """``train_seed`` for every job, ``workers`` at a time in worker processes (default: one
    per CPU); the results come back in the jobs' order."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: list[SeedResult] = []
    if workers == 1:
        for job in jobs:
            results.append(train_seed(job))
            if progress is not None:
                progress(1)
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(train_seed, jobs):
            results.append(result)
            if progress is not None:
                progress(1)
    return results
