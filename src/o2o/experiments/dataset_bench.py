"""Offline learners on the reference suite: d3rlpy's DiscreteCQL, DiscreteBCQ and DiscreteBC
beside the project's offline learner (paper IV-C2, Algorithm 1, and the project's settings),
each trained on the same suite data set and scored on the suite's held-out test episodes,
with D4RL's normalised score against the suite's references (``o2o.logs.suite``).

Every method sees only the train split of one (network, load, behaviour) data set; the test
split's episodes are simulated with the trained policy making every decision. d3rlpy's policies
act greedily among the available actions (``o2o.experiments.d3rlpy_adapter``); the project's
policies sample their masked softmax, as deployed (``o2o.learn.evaluate``). Rewards are the
suite's (its reward credit) for every method; ``o2o-paper`` uses the paper's hyper-parameters
and observation (layout v1, the first 3N + 6 columns), on those rewards.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from o2o.core.decpomdp import OBS_LAYOUT_VERSION, obs_dim
from o2o.core.errors import UserError
from o2o.core.metrics import mean_ci95
from o2o.experiments.d3rlpy_adapter import ALGORITHMS, evaluate_algorithm, fit, to_mdp_dataset
from o2o.learn.evaluate import evaluate_policy
from o2o.learn.offline import train_offline
from o2o.learn.settings import learner_settings
from o2o.logs.suite import MIXTURE, Suite, normalised_score

PROJECT_METHODS = ("o2o-project", "o2o-paper")
METHODS = (*ALGORITHMS, *PROJECT_METHODS)
D3RLPY_STEPS = 5000


def v1_view(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The data set with layout-v1 observations (the first 3N + 6 columns of v2)."""
    width = obs_dim(data["action_masks"].shape[1] - 1, OBS_LAYOUT_VERSION)
    out = dict(data)
    out["observations"] = np.ascontiguousarray(data["observations"][:, :width])
    out["next_observations"] = np.ascontiguousarray(data["next_observations"][:, :width])
    out["obs_layout"] = np.array(OBS_LAYOUT_VERSION)
    return out


def train_and_score(method: str, data: dict[str, np.ndarray], scenario, network, test_seeds,
                    d3rlpy_steps: int, seed: int) -> dict[str, Any]:
    """Train ``method`` on ``data``; its per-episode test success rates and training record."""
    start = time.perf_counter()
    if method in ALGORITHMS:
        algo = fit(method, to_mdp_dataset(data), d3rlpy_steps, seed)
        seconds = time.perf_counter() - start
        rates = evaluate_algorithm(algo, scenario, network, test_seeds,
                                   data["observations"].shape[1])["success_rate"]
        return {"rates": rates, "steps": d3rlpy_steps, "batch_size": algo.config.batch_size,
                "train_s": seconds}
    if method not in PROJECT_METHODS:
        raise UserError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    import torch

    torch.set_num_threads(1)
    settings = learner_settings(method.removeprefix("o2o-"))
    if settings.obs_layout == OBS_LAYOUT_VERSION:
        data = v1_view(data)
    result = train_offline(data, settings.offline, seed=seed, steps=settings.offline_steps,
                           show_progress=False)
    seconds = time.perf_counter() - start
    rates = evaluate_policy(scenario, network, result.policy.actor, test_seeds)["success_rate"]
    return {"rates": rates, "steps": settings.offline_steps,
            "batch_size": settings.offline.batch_size, "train_s": seconds,
            "algorithm": settings.offline.algorithm}


def bench(suite: Suite, network_seed: int, load: str, behaviours: list[str], methods: list[str],
          d3rlpy_steps: int = D3RLPY_STEPS, seed: int = 0,
          progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per (behaviour, method): test success rate with its 95% interval and the
    normalised scores against the expert (best heuristic) and ``central``; plus a row for each
    pure behaviour policy itself (its reference score on the same test episodes)."""
    cell = suite.cell(network_seed, load)
    scenario, network = suite.scenario_network(cell)
    test = suite.split_seeds("test")
    rows = []
    for behaviour in behaviours:
        data = suite.dataset(cell, behaviour, "train")
        if behaviour != MIXTURE and behaviour in cell["test_scores"]:
            score = cell["test_scores"][behaviour]
            rows.append(_row(cell, behaviour, "behaviour policy", score["success_rate"],
                             score["ci95"], {}))
        for method in methods:
            out = train_and_score(method, data, scenario, network, test, d3rlpy_steps, seed)
            mean, lo, hi = mean_ci95(out.pop("rates"))
            rows.append(_row(cell, behaviour, method, mean, [lo, hi], out))
            if progress is not None:
                progress(f"{behaviour}: {method} done")
    return rows


def _row(cell: dict, behaviour: str, method: str, rate: float, ci95, info: dict) -> dict[str, Any]:
    return {"network_seed": cell["network_seed"], "load": cell["load"], "behaviour": behaviour,
            "method": method, "success_rate": rate, "ci95": list(ci95),
            "normalised_expert": normalised_score(rate, cell, "expert"),
            "normalised_central": normalised_score(rate, cell, "central"), **info}


def format_bench(rows: list[dict[str, Any]], cell: dict) -> str:
    """The table as Markdown (docs/datasets.md shows it as printed)."""
    refs = cell["references"]
    lines = [f"network seed {cell['network_seed']}, load {cell['load']}: random {refs['random']:.4f}, "
             f"expert ({refs['expert_scheduler']}) {refs['expert']:.4f}, central {refs['central']:.4f}",
             "",
             "| data set | method | steps × batch | train s | success rate (95% CI) | "
             "normalised (expert) | normalised (central) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        budget = f"{r['steps']} × {r['batch_size']}" if "steps" in r else "-"
        train = f"{r['train_s']:.0f}" if "train_s" in r else "-"
        lines.append(f"| {r['behaviour']} | {r['method']} | {budget} | {train} | "
                     f"{r['success_rate']:.4f} ({r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}) | "
                     f"{r['normalised_expert']:.1f} | {r['normalised_central']:.1f} |")
    return "\n".join(lines)
