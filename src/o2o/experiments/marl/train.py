"""BenchMARL's MAPPO, IPPO, QMIX and MASAC (discrete) on an o2o scenario, with O2O-DRL's online
budget, evaluated on the held-out episodes of ``o2o run``.

Budget. One environment step is one slot of one episode, in which every node decides (a joint
step of the Dec-POMDP, paper IV-B); BenchMARL calls it a frame. O2O-DRL's online phase runs
``Plan.online_episodes`` (400) episodes of T slots, i.e. 400 T environment steps (40 000 on
paper-sim); the external algorithms get exactly that many frames (``budget_x`` = 1) or
``budget_x`` times as many. O2O-DRL also learned offline from heuristic logs first; these
algorithms learn online only (like the online-only baseline).

Hyper-parameters. BenchMARL's defaults (its ``conf/`` YAML files: experiment, algorithm, MLP
model), except: frames per batch rounded down from its default (6000) to whole episodes of the
10 parallel envs that also divide the budget (5000 on paper-sim), the replay memory no larger
than the budget (it never overflows either way), and no logger, checkpoint or in-training
evaluation. The one tuning, on VALIDATION episodes: the learning rate among ``LR_GRID``
(BenchMARL's default first) and how the policy acts when evaluated, BenchMARL's
``evaluation_deterministic_actions`` True (its default: each node's most likely allowed action)
or False (actions sampled from the policy, as O2O-DRL's ``drl`` rule does; epsilon-greedy with
the final epsilon for QMIX). Only the chosen pair is evaluated on the TEST episodes.

Evaluation: each node runs the trained policy on its own observation and mask, on the episodes
of ``o2o.core.seeds.TEST`` in the same simulator, so the success rate of every episode pairs
with O2O-DRL's on the same episode. Sampled actions come from torch's generator seeded with
the training seed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from benchmarl.algorithms import IppoConfig, MappoConfig, MasacConfig, QmixConfig
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.models.mlp import MlpConfig
from torchrl.envs.utils import ExplorationType, set_exploration_type

from o2o.core import seeds
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.experiments.marl.env import OffloadTask, OffloadTorchEnv, scenario_and_network, task_config
from o2o.experiments.marl.results import ALGORITHMS, write_results
from o2o.experiments.methods import Plan

CONFIGS = {"mappo": MappoConfig, "ippo": IppoConfig, "qmix": QmixConfig, "masac": MasacConfig}
assert tuple(CONFIGS) == ALGORITHMS
LR_GRID = (5e-5, 5e-4)   # BenchMARL's default learning rate, and ten times it
N_ENVS = 10              # BenchMARL's default number of parallel envs (on- and off-policy)
DEFAULT_BATCH_FRAMES = 6000


def budget_episodes(budget_x: int, plan: Plan | None = None) -> int:
    """Online episodes of O2O-DRL (``Plan.online_episodes``) times ``budget_x``."""
    return (plan or Plan()).online_episodes * int(budget_x)


def batch_episodes(slots: int, episodes: int, n_envs: int = N_ENVS,
                   default_frames: int = DEFAULT_BATCH_FRAMES) -> int:
    """Episodes per collected batch: the largest multiple of ``n_envs`` that divides the budget
    of ``episodes`` and fits BenchMARL's default batch of frames (at least ``n_envs``)."""
    if episodes % n_envs:
        raise ValueError(f"the budget ({episodes} episodes) must be a multiple of {n_envs} envs")
    best = n_envs
    for e in range(n_envs, episodes + 1, n_envs):
        if episodes % e == 0 and e * slots <= default_frames:
            best = e
    return best


def experiment_config(frames: int, batch_frames: int, lr: float, out: Path,
                      changes: dict[str, Any] | None = None) -> ExperimentConfig:
    config = ExperimentConfig.get_from_yaml()
    config.max_n_frames, config.max_n_iters = frames, None
    config.on_policy_collected_frames_per_batch = config.off_policy_collected_frames_per_batch = batch_frames
    config.on_policy_n_envs_per_worker = config.off_policy_n_envs_per_worker = N_ENVS
    config.off_policy_memory_size = min(config.off_policy_memory_size, frames)
    config.lr = lr
    config.loggers, config.create_json, config.render = [], False, False
    config.evaluation = False
    config.checkpoint_interval, config.checkpoint_at_end = 0, False
    config.save_folder = str(out)
    for key, value in (changes or {}).items():
        setattr(config, key, value)
    return config


def train(algorithm: str, task_cfg: dict, training_seed: int, frames: int, batch_frames: int,
          lr: float, out: Path, changes: dict[str, Any] | None = None) -> tuple[Experiment, float]:
    """BenchMARL's ``algorithm`` with its default configuration on the o2o task; returns the
    trained experiment and its wall time (s)."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    experiment = Experiment(
        task=OffloadTask.OFFLOAD.get_task(task_cfg),
        algorithm_config=CONFIGS[algorithm].get_from_yaml(),
        model_config=MlpConfig.get_from_yaml(),
        critic_model_config=MlpConfig.get_from_yaml(),
        seed=int(training_seed),
        config=experiment_config(frames, batch_frames, lr, out, changes))
    experiment.run()
    return experiment, time.perf_counter() - start


EVAL_MODES = {"deterministic": ExplorationType.DETERMINISTIC, "sampled": ExplorationType.RANDOM}


def evaluate(experiment: Experiment, scenario: Scenario, network: Network, episode_seeds,
             mode: str = "deterministic", seed: int = 0) -> tuple[np.ndarray, float]:
    """Per-episode success rates of the trained policy on ``episode_seeds`` (one batch), with
    actions by ``mode`` (``EVAL_MODES``; sampled actions from torch's generator seeded with
    ``seed``), and the fraction of node-slots whose action the env had to replace."""
    env = OffloadTorchEnv(scenario, network, list(episode_seeds), len(episode_seeds))
    torch.manual_seed(seed)
    with torch.no_grad(), set_exploration_type(EVAL_MODES[mode]):
        env.rollout(max_steps=scenario.slots, policy=experiment.policy, break_when_any_done=True)
    return env.success_rates(), env.replaced_actions / max(env.node_slots, 1)


def replaced_in_training(experiment: Experiment) -> float:
    """The fraction of node-slots whose action the training envs replaced (BenchMARL's own
    evaluation env, never stepped here, adds nothing)."""
    envs = getattr(experiment.task, "envs", [])
    return sum(e.replaced_actions for e in envs) / max(sum(e.node_slots for e in envs), 1)


def run_marl(algorithm: str, scenario_name: str, overrides: list[str], network_seed: int, out: Path, *,
             budget_x: int = 1, training_seed: int = 0, lr_grid=LR_GRID, eval_episodes: int = 20,
             validation_episodes: int = 20, episodes: int | None = None,
             changes: dict[str, Any] | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``algorithm`` once per learning rate of ``lr_grid``, keep the learning rate and
    evaluation mode best on ``validation_episodes`` VALIDATION episodes, evaluate that on
    ``eval_episodes`` TEST episodes and write ``out/results.json``. ``episodes`` overrides the budget (tests); ``changes``
    overrides experiment settings (tests)."""
    torch.set_num_threads(1)
    task_cfg = task_config(scenario_name, overrides, network_seed)
    scenario, network = scenario_and_network(task_cfg)
    n_episodes = episodes if episodes is not None else budget_episodes(budget_x)
    frames = n_episodes * scenario.slots
    batch_frames = batch_episodes(scenario.slots, n_episodes) * scenario.slots
    val_seeds = seeds.VALIDATION.take(validation_episodes)
    test_seeds = seeds.TEST.take(eval_episodes)
    trials: list[dict[str, Any]] = []
    experiments: list[Experiment] = []
    for lr in lr_grid:
        experiment, seconds = train(algorithm, task_cfg, training_seed, frames, batch_frames, lr,
                                    out / "benchmarl" / f"lr{lr:g}", changes)
        val = {mode: float(evaluate(experiment, scenario, network, val_seeds, mode, training_seed)[0].mean())
               for mode in EVAL_MODES}
        trials.append({"lr": lr, "validation_success_rate": val, "train_s": seconds,
                       "frames": int(experiment.total_frames),
                       "replaced_actions_training": replaced_in_training(experiment)})
        experiments.append(experiment)
        log(f"{algorithm} lr {lr:g}: validation success rate " +
            ", ".join(f"{m} {v:.4f}" for m, v in val.items()) +
            f" ({seconds:.0f} s, {experiment.total_frames} frames)")
    # The best (learning rate, mode) on validation; the first of equals (BenchMARL's defaults).
    k, mode = max(((k, m) for k in range(len(trials)) for m in EVAL_MODES),
                  key=lambda km: trials[km[0]]["validation_success_rate"][km[1]])
    chosen = trials[k]
    start = time.perf_counter()
    rates, replaced = evaluate(experiments[k], scenario, network, test_seeds, mode, training_seed)
    report = {
        "method": f"marl-{algorithm}", "algorithm": algorithm, "library": "benchmarl 1.5.2",
        "scenario": scenario.model_dump(mode="json"), "overrides": list(overrides),
        "network_seed": int(network_seed), "training_seed": int(training_seed),
        "budget": {"budget_x": int(budget_x), "episodes": n_episodes, "env_steps": frames,
                   "env_step": "one slot of one episode: every node decides (BenchMARL's frame)"},
        "hyper_parameters": {"benchmarl_defaults": True, "lr_grid": list(lr_grid), "lr": chosen["lr"],
                             "evaluation": mode,
                             "frames_per_batch": batch_frames, "n_envs": N_ENVS,
                             "changes": dict(changes or {}), "trials": trials,
                             "validation_seeds": val_seeds},
        "evaluation_seeds": test_seeds,
        "evaluation": f"{mode} actions (chosen on validation)",
        "per_episode": rates.tolist(), "success_rate": float(rates.mean()),
        "replaced_actions": replaced,  # node-slots whose refused action the env replaced
        "wall_s": {"train_chosen": chosen["train_s"], "train_all": sum(t["train_s"] for t in trials),
                   "evaluate": time.perf_counter() - start},
    }
    write_results(out, report)
    log(f"{algorithm}: TEST success rate {rates.mean():.4f} over {len(test_seeds)} episodes "
        f"(lr {chosen['lr']:g}, {mode} actions)")
    return report
