"""Small hand-made networks and episodes for exact tests."""

from __future__ import annotations

import numpy as np

from o2o.core.episodes import SCHED_UNIFORMS, Episodes
from o2o.core.network import Network, overload_thresholds
from o2o.core.scenario import Scenario


def hand_scenario(nodes: int, slots: int, slot_s: float = 0.5, deadline_s: float = 4.0) -> Scenario:
    return Scenario(name="hand", nodes=nodes, slots=slots, slot_s=slot_s, deadline_s=deadline_s,
                    task_size_kb=(1, 10_000), complexity=(1, 10_000), cores=(1, 64),
                    link_fail_rate=(0, 1), node_fail_rate=(0, 1), arrival_prob=(0, 1),
                    link_rate_mbps=(1, 100), core_hz=1e9)


def hand_network(capacity_hz, rate_Bps, alpha=None, beta=None, cores=None, queue_coef=3.0) -> Network:
    """Capacities in Hz, rates in bytes/s (an (N, N) array or a scalar for every link)."""
    capacity_hz = np.asarray(capacity_hz, dtype=np.float64)
    n = capacity_hz.shape[0]
    rate = np.broadcast_to(np.asarray(rate_Bps, dtype=np.float64), (n, n)).copy()
    cores = np.asarray(cores if cores is not None else [1] * n, dtype=np.int64)
    return Network(
        cores=cores, capacity_hz=capacity_hz,
        node_fail_rate=np.zeros(n) if alpha is None else np.asarray(alpha, dtype=np.float64),
        arrival_prob=np.full(n, 0.5), link_rate_Bps=rate,
        link_fail_rate=np.zeros((n, n)) if beta is None else np.asarray(beta, dtype=np.float64),
        overload_threshold=overload_thresholds(cores, queue_coef))


def hand_episode(slots: int, nodes: int, tasks: dict, deadline_s: float = 4.0) -> Episodes:
    """One episode; ``tasks`` maps (slot, node) -> (size_bytes, cycles) or
    (size_bytes, cycles, deadline_s). No failures unless clocks are edited afterwards."""
    shape = (1, slots, nodes)
    has = np.zeros(shape, dtype=bool)
    size = np.ones(shape)
    cycles = np.ones(shape)
    deadline = np.full(shape, deadline_s)
    for (t, i), spec in tasks.items():
        has[0, t, i] = True
        size[0, t, i], cycles[0, t, i] = spec[0], spec[1]
        if len(spec) > 2:
            deadline[0, t, i] = spec[2]
    return Episodes(seeds=np.zeros(1, dtype=np.int64), has_task=has, size_bytes=size, cycles=cycles,
                    deadline_s=deadline, tx_fail_clock=np.full(shape, np.inf),
                    exec_fail_clock=np.full(shape, np.inf),
                    sched_u=np.zeros(shape + (SCHED_UNIFORMS,)))


def per_node_matches_env(scenario: Scenario, network: Network, drl, obs_layout: str, seeds=(0, 1, 2)):
    """Load the queues of ``seeds`` with RATC for 6 slots in the vector env, then build the
    observation and mask of every deciding node from its NodeView and probe answers (what a
    testbed node has), as ``drl`` does; check they equal the env's. Returns (view, obs, mask, b, i)."""
    from o2o.sim import make_scheduler
    from o2o.sim.env import OffloadVecEnv
    from o2o.sim.rollout import rule_actions
    from o2o.sim.views import node_views, probe_answers

    env = OffloadVecEnv(scenario, network, obs_layout=obs_layout)
    env.reset(list(seeds))
    ratc = make_scheduler("ratc")
    for _ in range(6):  # load the queues a little
        env.step(rule_actions(env.engine, ratc)[0])
    obs_env, mask_env = env._observe()
    e = env.engine
    state = e.node_state()
    b, i = np.nonzero(e.ep.has_task[:, e.t, :])
    assert b.size > 0
    view = node_views(e, state, b, i, drl.reads)
    obs, mask = drl.observe(view, probe_answers(e, state, b))
    np.testing.assert_array_equal(obs, obs_env[b, i])
    np.testing.assert_array_equal(mask, mask_env[b, i])
    return view, obs, mask, b, i


def random_ppo_batch(n: int, d: int, seed: int = 5, T: int = 6, B: int = 3) -> dict[str, np.ndarray]:
    """A random rollout buffer of PPOUpdate's layout ((T, B, N, ...)): node i has a task with
    probability 0.6, its masks allow a random subset with action 0 always, and it took action 0."""
    g = np.random.default_rng(seed)
    mask = g.random((T, B, n, n + 1)) < 0.7
    has = g.random((T, B, n)) < 0.6
    mask[..., -1] = ~has
    mask[~has, :-1] = False
    mask[has, 0] = True
    act = np.where(has, 0, n)
    return {"obs": g.random((T, B, n, d)).astype(np.float32), "mask": mask, "act": act,
            "logp": np.log(g.uniform(0.1, 1.0, (T, B, n))).astype(np.float32) * has,
            "value": g.normal(size=(T, B, n)).astype(np.float32), "rewards": g.normal(size=(T, B))}
