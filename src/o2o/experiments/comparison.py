"""The learner's comparison experiment (``o2o bench learn``): heuristic data straight from the
simulator, offline training, online fine-tuning, the online-only baseline, all evaluated on the
same held-out episodes, over several training seeds, with timings per phase.

This is the learner's own, rerunnable measurement of docs/learner.md; the main pipeline
(``o2o run``) does the same from task logs in a database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from o2o.core.episodes import sample_episodes
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.learn.data import rollout_dataset
from o2o.learn.evaluate import evaluate_policy, make_eval_fn, mean_ci95
from o2o.learn.offline import train_offline
from o2o.learn.online import train_online
from o2o.learn.settings import OfflineSettings, OnlineSettings
from o2o.learn.tracking import Tracker
from o2o.sim import episode_bound, make_scheduler
from o2o.sim.rollout import simulate

# Episode seeds of the heuristic data: far from evaluation (0, 1, ...) and training seeds.
DATA_SEED_BASE = 100_000


@dataclass
class Comparison:
    methods: dict[str, dict[str, Any]]            # name -> success_rate, ci95, per_seed, ...
    bound: float
    curves: dict[str, list[list[dict[str, Any]]]]  # "o2o-drl"/"online-only" -> per seed curve
    offline_curves: list[list[dict[str, Any]]]
    timings_s: dict[str, float] = field(default_factory=dict)


def _summary(per_seed_episode_rates: list[np.ndarray]) -> dict[str, Any]:
    """Mean and 95% CI over training seeds of each seed's mean over the evaluation episodes;
    also the pooled per-episode CI (seeds x episodes)."""
    seed_means = [float(np.mean(r)) for r in per_seed_episode_rates]
    mean, lo, hi = mean_ci95(seed_means) if len(seed_means) > 1 else mean_ci95(per_seed_episode_rates[0])
    pooled = np.concatenate(per_seed_episode_rates)
    _, plo, phi = mean_ci95(pooled)
    return {"success_rate": mean, "ci95": [lo, hi], "per_seed": seed_means,
            "episode_ci95": [plo, phi]}


def compare(scenario: Scenario, network: Network, seeds: list[int], eval_seeds: list[int],
            data_episodes: int, offline_steps: int, online_episodes: int,
            offline: OfflineSettings, online: OnlineSettings, heuristic: str = "ratc",
            data_credit: str | None = None, eval_every: int = 0, offline_eval_every: int = 0,
            tracker: Tracker | None = None, show_progress: bool = True) -> Comparison:
    """Heuristics and the three learned methods on the same ``eval_seeds``; see module doc."""
    tracker = tracker or Tracker()
    timings: dict[str, float] = {}
    methods: dict[str, dict[str, Any]] = {}
    for name in ("random", "local", "rda", "ratc", "esf", "central"):
        rate = simulate(scenario, network, eval_seeds, make_scheduler(name))["success_rate"]
        methods[name] = _summary([rate])
    bound = float(episode_bound(network, sample_episodes(scenario, network, eval_seeds)).mean())

    start = time.perf_counter()
    data = rollout_dataset(scenario, network, make_scheduler(heuristic),
                           range(DATA_SEED_BASE, DATA_SEED_BASE + data_episodes),
                           reward_credit=data_credit or online.reward_credit)
    timings["data"] = time.perf_counter() - start

    eval_fn = make_eval_fn(scenario, network, eval_seeds)
    rates: dict[str, list[np.ndarray]] = {"offline-only": [], "online-only": [], "o2o-drl": []}
    curves: dict[str, list[list[dict[str, Any]]]] = {"o2o-drl": [], "online-only": []}
    offline_curves = []
    for key in ("offline", "online", "online-only", "evaluate"):
        timings[key] = 0.0
    for seed in seeds:
        off = offline.model_copy(update={"eval_every": offline_eval_every})
        t = time.perf_counter()
        res = train_offline(data, off, seed=seed, steps=offline_steps,
                            callback=eval_fn if offline_eval_every else None, tracker=tracker,
                            show_progress=show_progress)
        timings["offline"] += time.perf_counter() - t
        offline_curves.append([h for h in res.history if "success_rate" in h])
        t = time.perf_counter()
        rates["offline-only"].append(evaluate_policy(scenario, network, res.actor, eval_seeds)["success_rate"])
        timings["evaluate"] += time.perf_counter() - t

        t = time.perf_counter()
        on = train_online(scenario, network, res.actor, res.critic, online, online_episodes, seed,
                          eval_every, eval_fn if eval_every else None, res.reward_stats, tracker,
                          show_progress, desc=f"o2o-drl seed {seed}")
        timings["online"] += time.perf_counter() - t
        curves["o2o-drl"].append(on.curve)
        rates["o2o-drl"].append(evaluate_policy(scenario, network, on.actor, eval_seeds)["success_rate"])

        t = time.perf_counter()
        scratch = online.model_copy(update={"self_head": offline.self_head})
        base = train_online(scenario, network, None, None, scratch, online_episodes, seed,
                            eval_every, eval_fn if eval_every else None, None, tracker,
                            show_progress, desc=f"online-only seed {seed}")
        timings["online-only"] += time.perf_counter() - t
        curves["online-only"].append(base.curve)
        rates["online-only"].append(evaluate_policy(scenario, network, base.actor, eval_seeds)["success_rate"])
    for name, r in rates.items():
        methods[name] = _summary(r)
    return Comparison(methods, bound, curves, offline_curves, timings)
