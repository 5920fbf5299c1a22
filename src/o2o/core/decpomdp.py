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

Observation layout v2 (``o2o-obs-v2``, length 10N + 6): the v1 layout, then what a node learns
by probing every node at its decision (paper IV-B2 probes for the 1-bit flag; a probe of node j
also returns F_j, alpha_j and its execution backlog, as RATC and ESF use them), seven blocks of
N values, block b of candidate j at ``3N + 6 + b N + j``:

=====  ==============================================================================
block  content (candidate j; the deciding node is i; blocks 1-6 are 0 without a task, when a
       node neither decides nor probes)
=====  ==============================================================================
0      F_j / (max cores * core_hz)
1      execution backlog of j in seconds (probed; its own for j = i) / (2 max d), clipped
2      send backlog of its link i -> j in seconds (0 at j = i) / (2 max d), clipped
3      est_ij / (2 d), clipped: the estimated completion of the task on j (paper eqs. 4-5,
       ``completion_estimate``); 0 without a task
4      (T^t_ij + T^c_j) / (2 d), clipped: the same without the queues; 0 without a task
5      rel_ij = exp(-beta_ij T^t_ij - alpha_j T^c_j); 0 without a task
6      the overload flag of j as probed
=====  ==============================================================================

Actions: 0..N-1 send the task to that node, N is "no task". Mask: without a task only N; with a
task N is masked and so is every node other than i whose overload flag is set.

Reward (paper IV-B): a task's outcome is +1 (SUCCESS) or -1 (DROP or a failure). The team reward
r_t sums the outcomes of the tasks that ended during slot t (``slot`` credit; outcomes after the
last slot count in r_{T-1}); the ``decision`` credit puts each outcome in the slot of the task's
decision instead. The ``node`` credit (a departure from the paper's team reward, for credit
assignment) gives each node its own task's outcome in the slot of its decision: r_t^i = the
outcome of the task node i decided at t, 0 without one; summed over the nodes it is the
``decision`` team reward.
"""

from __future__ import annotations

import numpy as np

from o2o.core.network import BITS_PER_BYTE, BYTES_PER_KB, BYTES_PER_MB, Network
from o2o.core.outcomes import end_slot, outcome_feedback
from o2o.core.scenario import Scenario

OBS_LAYOUT_VERSION = "o2o-obs-v1"      # the paper's observation (IV-B1)
OBS_LAYOUT_V2 = "o2o-obs-v2"           # v1 + what a node probes at its decision
OBS_LAYOUTS = (OBS_LAYOUT_VERSION, OBS_LAYOUT_V2)
V2_BLOCKS = 7
REWARD_CREDITS = ("slot", "decision", "node")
TEAM_CREDITS = ("slot", "decision")


def check_reward_credit(reward_credit: str) -> str:
    if reward_credit not in REWARD_CREDITS:
        raise ValueError(f"reward_credit must be one of {REWARD_CREDITS}, got {reward_credit!r}")
    return reward_credit


def check_obs_layout(obs_layout: str) -> str:
    if obs_layout not in OBS_LAYOUTS:
        raise ValueError(f"obs_layout must be one of {OBS_LAYOUTS}, got {obs_layout!r}")
    return obs_layout


def node_rewards(has_task, outcome) -> np.ndarray:
    """(..., T, N): node i's own task outcome (+1 / -1) at the slot of its decision, 0 without a
    task (the ``node`` credit)."""
    return np.where(np.asarray(has_task, dtype=bool), outcome_feedback(outcome), 0.0)


def rewards(has_task, outcome, end_s, slot_s: float, reward_credit: str) -> np.ndarray:
    """The rewards of one episode, (T, N): the team reward repeated for every node under the
    ``slot`` and ``decision`` credits, each node's own under ``node``."""
    check_reward_credit(reward_credit)
    if reward_credit == "node":
        return node_rewards(has_task, outcome)
    team = team_rewards(has_task, outcome, end_s, slot_s, reward_credit)
    return np.repeat(team[:, None], np.shape(has_task)[1], axis=1)


def team_rewards(has_task, outcome, end_s, slot_s: float, reward_credit: str = "slot") -> np.ndarray:
    """The team rewards r_0 .. r_{T-1} of one episode from its (T, N) task records."""
    check_reward_credit(reward_credit)
    if reward_credit not in TEAM_CREDITS:
        raise ValueError(f"{reward_credit!r} credit has no team reward")
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


def obs_dim(n: int, obs_layout: str = OBS_LAYOUT_VERSION) -> int:
    return 3 * n + 6 + (V2_BLOCKS * n if check_obs_layout(obs_layout) == OBS_LAYOUT_V2 else 0)


def probes_per_decision(n: int, obs_layout: str = OBS_LAYOUT_VERSION) -> tuple[int, str]:
    """Probe requests to other nodes that one decision from an observation of ``obs_layout``
    implies, and what they fetch: v1 needs the N - 1 peers' 1-bit overload flags for its mask
    (paper IV-B2), v2 every peer's full answer (capacity, alpha, backlog, flag)."""
    if check_obs_layout(obs_layout) == OBS_LAYOUT_V2:
        return n - 1, "full answers"
    return n - 1, "1-bit overload flags"


def nodes_of(dim: int, obs_layout: str = OBS_LAYOUT_VERSION) -> int | None:
    """N such that ``obs_dim(N, obs_layout) == dim`` (N >= 2), or None."""
    per = 3 + (V2_BLOCKS if check_obs_layout(obs_layout) == OBS_LAYOUT_V2 else 0)
    n, rest = divmod(dim - 6, per)
    return n if rest == 0 and n >= 2 else None


def completion_estimate(size_bytes, cycles, rate_Bps, send_backlog_s, capacity_hz, exec_backlog_s,
                        link_fail_rate, node_fail_rate, remote):
    """est_ij = sendbacklog_ij + T^t_ij + backlog_j + T^c_j and rel_ij = exp(-beta_ij T^t_ij -
    alpha_j T^c_j) (paper eqs. 4-5), the transmission terms 0 where ``remote`` is False (j = i).
    Arrays broadcast; the one definition used by the heuristics and by observation v2."""
    tx_s = np.where(remote, size_bytes / rate_Bps, 0.0)
    exec_s = cycles / capacity_hz
    est = np.where(remote, send_backlog_s, 0.0) + tx_s + exec_backlog_s + exec_s
    rel = np.exp(-link_fail_rate * tx_s - node_fail_rate * exec_s)
    return est, rel, tx_s + exec_s


def candidate_index(n: int) -> np.ndarray:
    """(N, K) column indices into an ``o2o-obs-v2`` observation: row j gathers the features of
    candidate destination j that a per-candidate scorer reads (``learn.nets`` and the numpy
    actor use the same indices). Columns: is-itself (the one-hot), r_ij, the seven v2 blocks of
    j, then the deciding node's own lambda, alpha, F, l and the task's s, c, d."""
    d1 = 3 * n + 6
    own = [n, n + 1, n + 2, n + 3, 3 * n + 3, 3 * n + 4, 3 * n + 5]
    return np.array([[j, 2 * n + 3 + j, *(d1 + b * n + j for b in range(V2_BLOCKS)), *own]
                     for j in range(n)], dtype=np.int64)


CANDIDATE_FEATURES = 2 + V2_BLOCKS + 7
# The columns of a candidate's features that differ between candidates (r_ij and the seven
# probed blocks of j); the set scorer adds their mean and maximum over all N candidates.
SET_POOLED = slice(1, 2 + V2_BLOCKS)
SET_FEATURES = CANDIDATE_FEATURES + 2 * (1 + V2_BLOCKS)
SCORER_HEADS = ("scorer", "set-scorer")


def set_candidate_features(x: np.ndarray) -> np.ndarray:
    """(..., N, CANDIDATE_FEATURES) candidate features -> (..., N, SET_FEATURES): each
    candidate's own features followed by the mean and the maximum over all N candidates of the
    per-candidate columns (``SET_POOLED``), so one candidate's score sees the whole candidate
    set a node probed (a DeepSets pooling of what observation v2 holds, paper IV-B1/IV-B2)."""
    pooled = x[..., SET_POOLED]
    n = x.shape[-2]
    mean = np.broadcast_to(pooled.mean(axis=-2, keepdims=True), pooled.shape[:-2] + (n, pooled.shape[-1]))
    top = np.broadcast_to(pooled.max(axis=-2, keepdims=True), mean.shape)
    return np.concatenate([x, mean, top], axis=-1).astype(x.dtype, copy=False)
CRITIC_INPUTS = ("own", "central")


def central_columns(n: int) -> np.ndarray:
    """Columns of every node's observation that the centralized critic adds to the deciding
    node's own (centralized training, decentralized execution): its execution queue l_k and
    its task's s, c, d. (K,) indices; the critic input is own observation + these columns of
    the N observations of the same slot, node by node."""
    return np.array([n + 3, 3 * n + 3, 3 * n + 4, 3 * n + 5], dtype=np.int64)


def critic_dim(n: int, obs_layout: str = OBS_LAYOUT_VERSION, critic_input: str = "own") -> int:
    if critic_input not in CRITIC_INPUTS:
        raise ValueError(f"critic_input must be one of {CRITIC_INPUTS}, got {critic_input!r}")
    return obs_dim(n, obs_layout) + (len(central_columns(n)) * n if critic_input == "central" else 0)


def central_shared(slot_obs: np.ndarray) -> np.ndarray:
    """(..., N, D) observations of the N nodes of one slot -> (..., 4N): the ``central_columns``
    of every node, node by node (the global state of the slot that the centralized critic
    sees)."""
    n = slot_obs.shape[-2]
    cols = central_columns(n)
    return np.asarray(slot_obs)[..., cols].reshape(*slot_obs.shape[:-2], n * len(cols))


def central_critic_input(slot_obs: np.ndarray) -> np.ndarray:
    """(..., N, D) -> (..., N, D + 4N): each node's own observation followed by
    ``central_shared`` of its slot."""
    shared = central_shared(slot_obs)[..., None, :]
    return np.concatenate([slot_obs, np.broadcast_to(shared, (*slot_obs.shape[:-1], shared.shape[-1]))], -1)

def _safe(x: float) -> float:
    return x if x > 0 else 1.0


class Observer:
    """Builds observations and masks for one scenario and network, batched over M nodes."""

    def __init__(self, scenario: Scenario, network: Network, obs_layout: str = OBS_LAYOUT_VERSION):
        n = network.n
        self.n = n
        self.obs_layout = check_obs_layout(obs_layout)
        self.dim = obs_dim(n, obs_layout)
        self.network = network
        self.capacity_scale = max(scenario.cores) * scenario.core_hz
        self.backlog_scale = 2.0 * _safe(scenario.deadline_s[1])
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
        # The compiled loops (numba) load on first use: importing this module stays cheap.
        from o2o.core.observe_loops import fill_episodes_v1, fill_mask, fill_v1

        self._fill_v1, self._fill_mask, self._fill_episodes_v1 = fill_v1, fill_mask, fill_episodes_v1

    def observe(self, node, exec_len, recv_len, has_task, size_bytes, cycles, deadline_s,
                probed=None) -> np.ndarray:
        """(M, D) float32. ``recv_len`` is (M, N): tasks in flight from j to node i. For layout
        v2, ``probed = (exec_backlog_s, send_backlog_s, overloaded)``, each (M, N): every node's
        execution backlog and overload flag as node i probed them, and i's own send backlogs."""
        node = np.asarray(node, dtype=np.int64)
        m = node.shape[0]
        has = np.asarray(has_task, dtype=bool)
        size_bytes, cycles, deadline_s = (np.asarray(x, dtype=np.float64) for x in (size_bytes, cycles, deadline_s))
        obs = np.empty((m, self.dim))
        self._fill_v1(obs, self.static, node, np.asarray(exec_len, dtype=np.float64),
                      np.asarray(recv_len, dtype=np.float64), self.others, has, size_bytes, cycles,
                      deadline_s, self.queue_scale, self.task_scale)
        if self.obs_layout == OBS_LAYOUT_V2:
            if probed is None:
                raise ValueError("observation v2 needs the probed backlogs and flags")
            d1 = 3 * self.n + 6
            blocks = np.zeros((m, V2_BLOCKS, self.n))
            self._probed_blocks(blocks, node, has, size_bytes, cycles, deadline_s, *probed)
            obs[:, d1:] = blocks.reshape(m, -1)
        return obs.astype(np.float32)

    def observe_episodes(self, exec_len, in_flight, overloaded, has_task, size_bytes, cycles,
                         deadline_s) -> tuple[np.ndarray, np.ndarray]:
        """Layout v1 only: the observation (B, N, D) float32 and the mask (B, N, N+1) of every
        node of B episodes, each node seeing its own queue, its receiving queues and every
        node's flag (what the vector env shows). Arguments are (B, N), ``in_flight`` (B, N, N)
        receiver-major. The same values as ``observe`` and ``mask`` row by row, in one call."""
        if self.obs_layout != OBS_LAYOUT_VERSION:
            raise ValueError(f"observe_episodes builds layout {OBS_LAYOUT_VERSION} only")
        B, n = np.shape(has_task)
        obs = np.empty((B, n, self.dim), dtype=np.float32)
        mask = np.empty((B, n, n + 1), dtype=bool)
        self._fill_episodes_v1(obs, mask, self.static, self.others, exec_len, in_flight, overloaded,
                               has_task, size_bytes, cycles, deadline_s, self.queue_scale, self.task_scale)
        return obs, mask

    def _probed_blocks(self, out, node, has, size_bytes, cycles, deadline_s, exec_backlog_s,
                       send_backlog_s, overloaded) -> None:
        """Fill the seven v2 blocks, ``out`` (M, 7, N)."""
        net, n = self.network, self.n
        clip = lambda x: np.minimum(x, 1.0)  # noqa: E731  (every value here is >= 0)
        out[:, 0] = net.capacity_hz[None] / self.capacity_scale
        rows = np.nonzero(has)[0]  # a node probes when it has a task to place
        if rows.size == 0:
            return
        i = node[rows]
        exec_backlog_s = np.asarray(exec_backlog_s, dtype=np.float64)
        send_backlog_s = np.where(np.arange(n)[None] == node[:, None], 0.0, send_backlog_s)
        out[rows, 1] = clip(exec_backlog_s[rows] / self.backlog_scale)
        out[rows, 2] = clip(send_backlog_s[rows] / self.backlog_scale)
        out[rows, 6] = np.asarray(overloaded, dtype=bool)[rows]
        remote = np.arange(n)[None] != i[:, None]
        est, rel, nominal = completion_estimate(
            np.asarray(size_bytes, dtype=np.float64)[rows, None],
            np.asarray(cycles, dtype=np.float64)[rows, None], net.link_rate_Bps[i],
            send_backlog_s[rows], net.capacity_hz[None], exec_backlog_s[rows],
            net.link_fail_rate[i], net.node_fail_rate[None], remote)
        twice_d = 2.0 * np.asarray(deadline_s, dtype=np.float64)[rows, None]
        out[rows, 3] = clip(est / twice_d)
        out[rows, 4] = clip(nominal / twice_d)
        out[rows, 5] = rel

    def mask(self, node, has_task, overloaded) -> np.ndarray:
        """(M, N+1) bool: which actions are available (paper IV-B)."""
        overloaded = np.asarray(overloaded, dtype=bool)
        out = np.empty((overloaded.shape[0], self.n + 1), dtype=bool)
        self._fill_mask(out, np.asarray(node, dtype=np.int64), np.asarray(has_task, dtype=bool), overloaded)
        return out

