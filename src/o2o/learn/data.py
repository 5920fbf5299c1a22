"""Offline data sets as the learner reads them: the array layout, its checks, and a direct
simulator rollout for tests and experiments (the pipeline rebuilds the same arrays from task
logs; ``.npz`` files are read and written by ``o2o.logs.dataset``).

Layout (M rows, one per node per slot, no-task rows included with action N):

======================  =========  ======================================================
key                     dtype      shape / meaning
======================  =========  ======================================================
observations            float32    (M, 3N+6) o_t^i (``o2o.core.decpomdp``)
actions                 int64      (M,) a_t^i in 0..N (N = no task)
rewards                 float32    (M,) team reward r_t of the row's slot, not normalised
next_observations       float32    (M, 3N+6) o_{t+1}^i
terminals               bool       (M,) t = T-1 (never bootstrapped from)
action_masks            bool       (M, N+1) available actions at o_t^i
next_action_masks       bool       (M, N+1) available actions at o_{t+1}^i
episode_ids             int64      (M,)
node_ids                int64      (M,)
======================  =========  ======================================================

A heuristic may take an action its mask forbids (RATC may send to an overloaded node); such
rows are kept as they are, and the learner treats the data action as available in the CQL
term (see ``o2o.learn.offline``).
"""

from __future__ import annotations

import numpy as np

from o2o.core.decpomdp import obs_dim
from o2o.core.errors import UserError
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.sim.env import OffloadVecEnv
from o2o.sim.rollout import rule_actions

DATASET_KEYS: dict[str, type] = {
    "observations": np.float32, "actions": np.int64, "rewards": np.float32,
    "next_observations": np.float32, "terminals": np.bool_, "action_masks": np.bool_,
    "next_action_masks": np.bool_, "episode_ids": np.int64, "node_ids": np.int64,
}


def check_dataset(data: dict[str, np.ndarray], n: int | None = None) -> dict[str, np.ndarray]:
    """The data set with the documented dtypes, or a UserError that says what is wrong.

    ``n``: the number of nodes the model is for; the observation width must be 3n+6."""
    missing = [k for k in DATASET_KEYS if k not in data]
    if missing:
        raise UserError(f"data set lacks {', '.join(missing)}; expected keys: {', '.join(DATASET_KEYS)}")
    out = {k: np.asarray(data[k]).astype(t, copy=False) for k, t in DATASET_KEYS.items()}
    m = out["actions"].shape[0]
    if m == 0:
        raise UserError("data set is empty")
    obs = out["observations"]
    if obs.ndim != 2:
        raise UserError(f"observations must be (M, 3N+6), got shape {obs.shape}")
    d = obs.shape[1]
    if (d - 6) % 3 or d < 12:
        raise UserError(f"observation width {d} is not 3N+6 for any N >= 2")
    n_data = (d - 6) // 3
    if n is not None and n_data != n:
        raise UserError(f"data set is for {n_data} nodes (observation width {d}) but the scenario "
                        f"has {n}; pick the scenario the data was logged on")
    shapes = {"observations": (m, d), "next_observations": (m, d), "action_masks": (m, n_data + 1),
              "next_action_masks": (m, n_data + 1)}
    for k in DATASET_KEYS:
        want = shapes.get(k, (m,))
        if out[k].shape != want:
            raise UserError(f"data set field {k} has shape {out[k].shape}, expected {want}")
    if out["actions"].min() < 0 or out["actions"].max() > n_data:
        raise UserError(f"actions must lie in 0..{n_data}")
    if not out["action_masks"].any(axis=1).all() or not out["next_action_masks"].any(axis=1).all():
        raise UserError("every action mask must allow at least one action")
    return out


def rollout_dataset(scenario: Scenario, network: Network, rule, seeds, reward_credit: str = "slot",
                    batch_size: int = 64) -> dict[str, np.ndarray]:
    """Transitions of ``rule`` (a decentralized heuristic) on the episodes ``seeds``, taken
    straight from ``OffloadVecEnv``: rows ordered by episode, slot, node."""
    env = OffloadVecEnv(scenario, network, reward_credit=reward_credit)
    seeds = [int(s) for s in seeds]
    parts = []
    for lo in range(0, len(seeds), batch_size):
        chunk = seeds[lo:lo + batch_size]
        obs, mask = env.reset(chunk)
        B, N, T = len(chunk), env.n, scenario.slots
        o = np.empty((B, T + 1, N, env.obs_dim), np.float32)
        m = np.empty((B, T + 1, N, N + 1), bool)
        a = np.empty((B, T, N), np.int64)
        o[:, 0], m[:, 0] = obs, mask
        for t in range(T):
            actions, _ = rule_actions(env.engine, rule)
            obs, mask, _, done, info = env.step(actions)
            a[:, t], o[:, t + 1], m[:, t + 1] = actions, obs, mask
        r = np.broadcast_to(info["episode_rewards"][:, :, None], (B, T, N))
        term = np.broadcast_to((np.arange(T) == T - 1)[None, :, None], (B, T, N))
        parts.append({
            "observations": o[:, :T].reshape(-1, env.obs_dim),
            "actions": a.reshape(-1),
            "rewards": r.reshape(-1).astype(np.float32),
            "next_observations": o[:, 1:].reshape(-1, env.obs_dim),
            "terminals": term.reshape(-1).copy(),
            "action_masks": m[:, :T].reshape(-1, N + 1),
            "next_action_masks": m[:, 1:].reshape(-1, N + 1),
            "episode_ids": np.repeat(np.asarray(chunk, np.int64), T * N),
            "node_ids": np.tile(np.arange(N, dtype=np.int64), B * T),
        })
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    assert obs_dim(network.n) == data["observations"].shape[1]
    return data
