"""The Dec-POMDP of the paper (IV-B): observations and action masks, written once.

Used by the simulator's environments, by the log rebuild of transitions, and by a testbed node
running the ``drl`` scheduler, from the same few arrays a node knows.

Observation layout (length 3N + 6, every element scaled into [0, 1]):

=============  =======  ============================================================
slice          length   content
=============  =======  ============================================================
0 : N          N        one-hot of the node index i
N              1        lambda_i / max lambda of the scenario
N+1            1        alpha_i / max alpha of the scenario
N+2            1        F_i / (max cores * core_hz)
N+3            1        l_i: tasks in its execution queue / largest overload threshold, clipped
N+4 : 2N+3     N-1      l^r_ij for every other node j (ascending j, i skipped), scaled like l_i
2N+3 : 3N+3    N        r_ij / max rate, r_ii = the maximum rate
3N+3 : 3N+6    3        s / max s, c / max c, d / max d (zeros when there is no task)
=============  =======  ============================================================

Actions: 0..N-1 send the task to that node, N is "no task". Mask: without a task only N; with a
task N is masked and so is every node other than i whose overload flag is set.

Reward (paper IV-B): a task's outcome is +1 (SUCCESS) or -1 (DROP or a failure). The team reward
r_t sums the outcomes of the tasks that ended during slot t (``slot`` credit; outcomes after the
last slot count in r_{T-1}); the ``decision`` credit puts each outcome in the slot of the task's
decision instead.
"""

from __future__ import annotations

import numpy as np

from o2o.core.network import BITS_PER_BYTE, BYTES_PER_KB, BYTES_PER_MB, Network
from o2o.core.outcomes import end_slot, outcome_feedback
from o2o.core.scenario import Scenario

OBS_LAYOUT_VERSION = "o2o-obs-v1"
REWARD_CREDITS = ("slot", "decision")


def check_reward_credit(reward_credit: str) -> str:
    if reward_credit not in REWARD_CREDITS:
        raise ValueError(f"reward_credit must be one of {REWARD_CREDITS}, got {reward_credit!r}")
    return reward_credit


def team_rewards(has_task, outcome, end_s, slot_s: float, reward_credit: str = "slot") -> np.ndarray:
    """The team rewards r_0 .. r_{T-1} of one episode from its (T, N) task records."""
    check_reward_credit(reward_credit)
    has = np.asarray(has_task, dtype=bool)
    t_slots = has.shape[0]
    feedback = outcome_feedback(outcome)[has]
    if reward_credit == "slot":
        slot = end_slot(np.asarray(end_s)[has], slot_s, t_slots)
    else:
        slot = np.nonzero(has)[0]  # the decision slot is the arrival slot
    rewards = np.zeros(t_slots)
    np.add.at(rewards, slot, feedback)
    return rewards


def obs_dim(n: int) -> int:
    return 3 * n + 6


def _safe(x: float) -> float:
    return x if x > 0 else 1.0


class Observer:
    """Builds observations and masks for one scenario and network, batched over M nodes."""

    def __init__(self, scenario: Scenario, network: Network):
        n = network.n
        self.n = n
        self.queue_scale = float(network.overload_threshold.max())
        max_bytes = scenario.task_size_kb[1] * BYTES_PER_KB
        self.task_scale = np.array([
            max_bytes,
            _safe(scenario.complexity[1] * max_bytes * BITS_PER_BYTE),
            _safe(scenario.deadline_s[1]),
        ])
        # The per-node constant part: one-hot, lambda, alpha, F and the rates, (N, 3N + 6).
        static = np.zeros((n, obs_dim(n)), dtype=np.float64)
        static[:, :n] = np.eye(n)
        static[:, n] = network.arrival_prob / _safe(scenario.arrival_prob[1])
        static[:, n + 1] = network.node_fail_rate / _safe(scenario.node_fail_rate[1])
        static[:, n + 2] = network.capacity_hz / (max(scenario.cores) * scenario.core_hz)
        static[:, 2 * n + 3:3 * n + 3] = network.link_rate_Bps / (scenario.link_rate_mbps[1] * BYTES_PER_MB)
        self.static = np.clip(static, 0.0, 1.0)
        # For node i, the columns of the other nodes j != i in ascending order, (N, N-1).
        self.others = np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int64)

    def observe(self, node, exec_len, recv_len, has_task, size_bytes, cycles, deadline_s) -> np.ndarray:
        """(M, 3N+6) float32. ``recv_len`` is (M, N): tasks in flight from j to node i."""
        n = self.n
        node = np.asarray(node, dtype=np.int64)
        obs = self.static[node].copy()
        obs[:, n + 3] = np.minimum(np.asarray(exec_len) / self.queue_scale, 1.0)
        recv_others = np.take_along_axis(np.asarray(recv_len), self.others[node], axis=1)
        obs[:, n + 4:2 * n + 3] = np.minimum(recv_others / self.queue_scale, 1.0)
        task = np.stack([size_bytes, cycles, deadline_s], axis=-1) / self.task_scale
        obs[:, 3 * n + 3:] = np.where(np.asarray(has_task)[:, None], np.clip(task, 0.0, 1.0), 0.0)
        return obs.astype(np.float32)

    def mask(self, node, has_task, overloaded) -> np.ndarray:
        """(M, N+1) bool: which actions are available (paper IV-B)."""
        return action_mask(node, has_task, overloaded)


def action_mask(node, has_task, overloaded) -> np.ndarray:
    node = np.asarray(node, dtype=np.int64)
    has_task = np.asarray(has_task, dtype=bool)
    overloaded = np.asarray(overloaded, dtype=bool)
    m, n = overloaded.shape
    mask = np.zeros((m, n + 1), dtype=bool)
    mask[:, :n] = ~overloaded & has_task[:, None]
    mask[np.arange(m), node] = has_task
    mask[:, n] = ~has_task
    return mask
