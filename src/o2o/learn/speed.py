"""Throughput of the learner's parts, as ``o2o bench learn`` prints it.

* offline gradient steps per second (one thread, batch 512 by default), for the paper's
  Algorithm 1 (discrete SAC + CQL + V on observation v1) and for the project's settings;
* online episodes per second of Algorithm 2 (collection on the vector env and the PPO update),
  from scratch with the given settings;
* environment node-slots per second of ``OffloadVecEnv`` stepped with a uniform choice among
  the available actions, one episode at a time (batch 1) and 64 at a time, and of the
  PettingZoo adapter ``OffloadParallelEnv`` (one episode, dicts per agent) stepped the same way.

Each figure is the best of ``repeats`` timed runs after a warm-up (3 for the learner, 7 for
the env, whose runs are short). Times are the process's CPU seconds (``time.process_time``):
with one thread that is the wall-clock time of an idle machine, and it stays close to it when
other work shares the cores.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.core.seeds import LOGS, online
from o2o.learn.offline import train_offline
from o2o.learn.online import OnlinePPO
from o2o.learn.settings import LearnerSettings
from o2o.logs.dataset import simulated_dataset
from o2o.sim import make_scheduler
from o2o.sim.env import OffloadParallelEnv, OffloadVecEnv


def _best(fn, repeats: int) -> float:
    """The shortest of ``repeats`` timings of ``fn()``, seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def offline_steps_per_s(scenario: Scenario, network: Network, settings: LearnerSettings,
                        steps: int = 200, batch_size: int = 512, repeats: int = 3,
                        data_episodes: int = 10) -> float:
    data = simulated_dataset(scenario, network, make_scheduler("ratc"), LOGS.take(data_episodes),
                             settings.reward_credit, obs_layout=settings.obs_layout)
    offline = settings.offline.model_copy(update={"batch_size": batch_size, "eval_every": 0})
    train_offline(data, offline, steps=10, show_progress=False)  # warm-up
    return steps / _best(lambda: train_offline(data, offline, steps=steps, show_progress=False), repeats)


def online_episodes_per_s(scenario: Scenario, network: Network, settings: LearnerSettings,
                          batches: int = 2, repeats: int = 2) -> dict[str, float]:
    """Episodes per second of whole iterations (collect + update) and of collection alone."""
    algo = OnlinePPO(scenario, network, settings.online, None, 0, settings.reward_credit,
                     settings.obs_layout)
    per = settings.online.episodes_per_batch
    seeds = online(0).take(per)
    algo.update(algo.collect(seeds)[0])  # warm-up

    def iterations():
        for _ in range(batches):
            algo.update(algo.collect(seeds)[0])

    def collections():
        for _ in range(batches):
            algo.collect(seeds)

    return {"iteration": batches * per / _best(iterations, repeats),
            "collect": batches * per / _best(collections, repeats)}


def env_node_slots_per_s(scenario: Scenario, network: Network, batch: int, obs_layout: str,
                         repeats: int = 7) -> float:
    """``OffloadVecEnv`` node-slots per second at ``batch`` episodes per step."""
    env = OffloadVecEnv(scenario, network, obs_layout=obs_layout)
    rng = np.random.default_rng(0)
    n = network.n
    episodes = max(1, 8 // batch)

    def run():
        for k in range(episodes):
            _, mask = env.reset(LOGS.take(batch, k * batch))
            while not env.engine.done:
                cdf = np.cumsum(mask / mask.sum(-1, keepdims=True), axis=-1)
                actions = np.minimum((rng.random(mask.shape[:2] + (1,)) >= cdf).sum(-1), n)
                _, mask, *_ = env.step(actions)

    run()  # warm-up
    return episodes * batch * scenario.slots * n / _best(run, repeats)


def pettingzoo_node_slots_per_s(scenario: Scenario, network: Network, episodes: int = 8,
                                repeats: int = 7) -> float:
    """``OffloadParallelEnv`` node-slots per second (layout v1, one episode at a time), each
    agent choosing uniformly among its available actions."""
    env = OffloadParallelEnv(scenario, network)
    rng = np.random.default_rng(0)

    def run():
        for k in range(episodes):
            obs, _ = env.reset(seed=LOGS.take(1, k)[0])
            while env.agents:
                acts = {a: int(rng.choice(np.flatnonzero(o["action_mask"]))) for a, o in obs.items()}
                obs, *_ = env.step(acts)

    run()  # warm-up
    return episodes * scenario.slots * network.n / _best(run, repeats)


def learner_speed(scenario: Scenario, network: Network, settings: dict[str, LearnerSettings],
                  offline_steps: int = 200) -> dict[str, Any]:
    """Every figure of ``o2o bench learn``, one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out: dict[str, Any] = {"offline_steps_per_s": {}, "online_episodes_per_s": {}}
        for name, s in settings.items():
            out["offline_steps_per_s"][name] = offline_steps_per_s(scenario, network, s, offline_steps)
            out["online_episodes_per_s"][name] = online_episodes_per_s(scenario, network, s)
        out["env_node_slots_per_s"] = {
            f"{layout} batch {b}": env_node_slots_per_s(scenario, network, b, layout)
            for layout in ("o2o-obs-v1", "o2o-obs-v2") for b in (1, 64)}
        out["env_node_slots_per_s"]["o2o-obs-v1 PettingZoo"] = pettingzoo_node_slots_per_s(scenario, network)
        return out
    finally:
        torch.set_num_threads(threads)
