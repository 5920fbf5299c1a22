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

Observation layout v3 (``o2o-obs-v3``, length 7 + 10N): the same features mean the same thing
under every scenario and every N. Every value is a physical quantity divided by a constant of
``FeatureScales`` (fixed when the model is trained, recorded in its manifest and used again
wherever it runs; never the scenario's maxima), clipped into [0, 1]; nothing but the candidate
blocks grows with N (no one-hot of the node index). First the node part (7 values), then ten
blocks of N values, block b of candidate j at ``7 + b N + j``:

=============  ====================================================================
slice          content (deciding node i)
=============  ====================================================================
0              lambda_i / slot_s (tasks per second) / ``arrivals_per_s``
1              alpha_i (failures per second) / ``fail_rate_per_s``
2              F_i (Hz) / ``capacity_hz``
3              l_i: tasks in its execution queue / ``queue_tasks``
4, 5, 6        s (bytes) / ``task_bytes``, c (cycles) / ``task_cycles``, d (s) / ``deadline_s``
               (zeros when there is no task)
block 0        1 for j = i (the node itself), else 0
block 1        r_ij (bytes per second) / ``rate_Bps``; 0 at j = i (nothing is sent)
blocks 2-8     the seven v2 blocks of j, F_j / ``capacity_hz`` and the backlogs in seconds /
               ``backlog_s``; est_ij / (2 d), (T^t_ij + T^c_j) / (2 d), rel_ij and the flag as in v2
block 9        l^r_ij: tasks in flight from j to i / ``queue_tasks`` (0 at j = i)
=============  ====================================================================

The scorer heads read, per candidate, blocks 0-8 of j and the node part (``candidate_index``), the
same 16 features as on v2: their weights do not depend on N, so a v3 scorer model can run at any
N its manifest allows (``o2o.models``). The pooled critic (``critic_input=pooled``) reads the
node part and the mean and maximum over the candidates of blocks 1-9 (``pooled_critic_input``),
so with it no weight of the model depends on N and it also trains at any N.

Observation layout v3 with k probes (``o2o-obs-v3-k<k>``, e.g. ``o2o-obs-v3-k2``, length
7 + 11N; k, 1 <= k <= N - 1, is part of the name, so a model's manifest records it): RATC's probe
budget (paper V-B probes two nodes per task) instead of v2/v3's N - 1. At each decision node i
probes exactly k nodes other than itself, ``probe_set``: the k peers with the smallest keys of a
fixed integer hash of the episode's scheduler uniform ``sched_u[t, i, PROBE_SET_UNIFORM]`` (the
same draw in the simulator, the log rebuild, which regenerates it from the episode seed, and the
testbed, which receives it with the task). The layout is v3's, with the seven probed blocks 2-8
of a candidate it did not probe set to 0, and one more block:

=============  ====================================================================
block 10       1 for a candidate i knows by probing or as itself (j = i, and the k probed
               peers when it has a task), else 0 (without a task nothing is probed)
=============  ====================================================================

Blocks 0, 1 and 9 (is-itself, r_ij, l^r_ij) are what i knows without probing and are kept for
every j. The mask allows only i itself and the probed peers whose flag is not set. The scorer
heads read the same 16 columns as on v3 (``candidate_index``): a candidate that was not probed is
masked, so its score is never used; ``set-scorer`` pools over all N candidates, the unprobed
ones as zeros.

Actions: 0..N-1 send the task to that node, N is "no task". Mask: without a task only N; with a
task N is masked and so is every node other than i whose overload flag is set (layout v3-k: and
every peer it did not probe).

Reward (paper IV-B): a task's outcome is +1 (SUCCESS) or -1 (DROP or a failure). The team reward
r_t sums the outcomes of the tasks that ended during slot t (``slot`` credit; outcomes after the
last slot count in r_{T-1}); the ``decision`` credit puts each outcome in the slot of the task's
decision instead. The ``node`` credit (a departure from the paper's team reward, for credit
assignment) gives each node its own task's outcome in the slot of its decision: r_t^i = the
outcome of the task node i decided at t, 0 without one; summed over the nodes it is the
``decision`` team reward. The ``counterfactual`` credit (``counterfactual-w<w>``: harm weight w,
default 1) is the node credit minus w times the harm the decision imposed on the other tasks
(a difference reward): r_t^i = outcome_i - w * sum over the other tasks k of (their outcome had
task i not been placed - their actual outcome), computed by ``o2o.sim.harm``.
"""

from __future__ import annotations

import argparse
import re
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from o2o.core.errors import UserError
from o2o.core.network import BITS_PER_BYTE, BYTES_PER_KB, BYTES_PER_MB, Network
from o2o.core.outcomes import end_slot, outcome_feedback
from o2o.core.scenario import Scenario

OBS_LAYOUT_VERSION = "o2o-obs-v1"      # the paper's observation (IV-B1)
OBS_LAYOUT_V2 = "o2o-obs-v2"           # v1 + what a node probes at its decision
OBS_LAYOUT_V3 = "o2o-obs-v3"           # node part + per-candidate blocks, fixed physical scales
OBS_LAYOUT_V3K = "o2o-obs-v3-k"        # v3 with k probes: the name is this prefix and k
_V3K_NAME = re.compile(r"o2o-obs-v3-k([1-9][0-9]{0,5})")


def layout_probes(obs_layout: str) -> int | None:
    """k of a k-probe layout name (``o2o-obs-v3-k2`` -> 2), None for any other name."""
    match = _V3K_NAME.fullmatch(obs_layout) if isinstance(obs_layout, str) else None
    return int(match.group(1)) if match else None


def kprobe_layout(k: int) -> str:
    """The name of layout v3 with ``k`` probes per decision (k >= 1; k <= N - 1 is checked where
    N is known, ``check_probes``)."""
    if isinstance(k, bool) or int(k) != k or not 1 <= int(k) <= 999_999:
        raise ProbeBudgetError(f"the probes per decision k must be a whole number >= 1, got {k!r}")
    return f"{OBS_LAYOUT_V3K}{int(k)}"


class ProbeBudgetError(UserError, ValueError):
    """A probe budget k that the network cannot give (a user error: exit code 2)."""


def check_probes(k: int, n: int) -> int:
    """Refuse a probe budget a node of N = ``n`` nodes cannot spend: k must lie in [1, N - 1]."""
    if isinstance(k, bool) or int(k) != k or not 1 <= int(k) <= n - 1:
        raise ProbeBudgetError(f"k = {k} probes per decision does not fit {n} nodes: a node probes 1 to "
                         f"N - 1 = {n - 1} other nodes")
    return int(k)


def is_v3(obs_layout: str) -> bool:
    """Layout v3 or v3 with k probes (fixed physical scales, no one-hot)."""
    return obs_layout == OBS_LAYOUT_V3 or layout_probes(obs_layout) is not None


# The fixed layout names; besides them every ``o2o-obs-v3-k<k>`` (k >= 1) is a layout too.
OBS_LAYOUTS = (OBS_LAYOUT_VERSION, OBS_LAYOUT_V2, OBS_LAYOUT_V3)
# Every layout, as messages name them.
LAYOUT_NAMES = f"{', '.join(OBS_LAYOUTS)} or {OBS_LAYOUT_V3K}<k> (k probes per decision)"


def is_known_layout(obs_layout: str) -> bool:
    """Whether this o2o builds observations of layout ``obs_layout``."""
    return obs_layout in OBS_LAYOUTS or layout_probes(obs_layout) is not None


def is_probed(obs_layout: str) -> bool:
    """Whether what a node probes at its decision is part of the observation (v2, v3, v3-k;
    not the paper's v1, whose mask needs only the peers' 1-bit overload flags)."""
    return obs_layout in (OBS_LAYOUT_V2, OBS_LAYOUT_V3) or layout_probes(obs_layout) is not None


def obs_layout_option(value: str) -> str:
    """argparse ``type`` of an ``--obs-layout`` option: the name, or a usage error (exit 2)."""
    if not is_known_layout(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an observation layout: use {LAYOUT_NAMES}")
    return value


V2_BLOCKS = 7
V3_NODE_FEATURES = 7                   # lambda, alpha, F, l, s, c, d
V3_BLOCKS = 3 + V2_BLOCKS              # is-itself, r_ij, the seven v2 blocks, l^r_ij
V3K_BLOCKS = V3_BLOCKS + 1              # v3's blocks and the probed indicator
# The scheduler uniform (``Episodes.sched_u``) the k probed nodes are drawn from (the spare one:
# 0 and 1 are the heuristics' probe picks and draws, 2 the policy's sample).
PROBE_SET_UNIFORM = 3
# (fixed columns, columns per node) of each layout: obs_dim = fixed + per_node * N.
_LAYOUT_SIZES = {OBS_LAYOUT_VERSION: (6, 3), OBS_LAYOUT_V2: (6, 3 + V2_BLOCKS),
                 OBS_LAYOUT_V3: (V3_NODE_FEATURES, V3_BLOCKS)}


def _sizes(obs_layout: str) -> tuple[int, int]:
    if layout_probes(obs_layout) is not None:
        return V3_NODE_FEATURES, V3K_BLOCKS
    return _LAYOUT_SIZES[check_obs_layout(obs_layout)]
_Scale = Annotated[float, Field(gt=0)]


class FeatureScales(BaseModel):
    """The constants observation v3 divides its physical features by (then clips into [0, 1]).
    Fixed when a model is trained and recorded in its manifest; a model's observations are
    always built with its own scales. The defaults are the largest values of ``paper-sim`` and
    of the sweeps of its figures 5a-c (tasks up to 12000 KB at 2400 cycles per bit, failure
    rates up to 0.3 per second, a task per 0.5 s slot, 32 cores of 3 GHz, 40 MB/s links, 4 s
    deadlines; queues up to the largest overload threshold, 32 / 4 * 3 tasks)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    arrivals_per_s: _Scale = 2.0                          # lambda_i / slot_s
    fail_rate_per_s: _Scale = 0.3                         # alpha_i
    capacity_hz: _Scale = 32 * 3e9                        # F_i, F_j
    queue_tasks: _Scale = 24.0                            # l_i, l^r_ij
    task_bytes: _Scale = 12_000.0 * BYTES_PER_KB          # s
    task_cycles: _Scale = 2400.0 * 12_000.0 * BYTES_PER_KB * BITS_PER_BYTE  # c
    deadline_s: _Scale = 4.0                              # d
    backlog_s: _Scale = 8.0                               # execution and send backlogs
    rate_Bps: _Scale = 40.0 * BYTES_PER_MB                # r_ij


def covering_scales(scenario: Scenario, base: FeatureScales | None = None) -> FeatureScales:
    """``base`` (default: the defaults) with every scale raised where ``scenario`` reaches
    further (its largest arrival rate, failure rate, capacity, queue threshold, task, deadline
    and link rate), so no feature of a model trained on it is clipped by a scale below its
    range. The scales a model trained across several scenarios is given: those covering the
    widest one."""
    s = base or FeatureScales()
    max_bytes = scenario.task_size_kb[1] * BYTES_PER_KB
    return FeatureScales(
        arrivals_per_s=max(s.arrivals_per_s, scenario.arrival_prob[1] / scenario.slot_s),
        fail_rate_per_s=max(s.fail_rate_per_s, scenario.node_fail_rate[1]),
        capacity_hz=max(s.capacity_hz, max(scenario.cores) * scenario.core_hz),
        queue_tasks=max(s.queue_tasks, max(scenario.cores) / min(scenario.cores) * scenario.queue_coef),
        task_bytes=max(s.task_bytes, max_bytes),
        task_cycles=max(s.task_cycles, scenario.complexity[1] * max_bytes * BITS_PER_BYTE),
        deadline_s=max(s.deadline_s, scenario.deadline_s[1]),
        backlog_s=max(s.backlog_s, 2.0 * scenario.deadline_s[1]),
        rate_Bps=max(s.rate_Bps, scenario.link_rate_mbps[1] * BYTES_PER_MB))


REWARD_CREDITS = ("slot", "decision", "node", "counterfactual")
TEAM_CREDITS = ("slot", "decision")
COUNTERFACTUAL = "counterfactual"
# ``counterfactual`` (harm weight 1) or ``counterfactual-w<w>``, e.g. ``counterfactual-w0.5``: the
# weight is part of the name because it changes what the rewards (and so a critic) mean, and the
# name travels with the data set and the model.
# Every credit, as messages name them.
CREDIT_NAMES = ("slot, decision, node, counterfactual or counterfactual-w<w> (harm weight w, e.g. "
                "counterfactual-w0.5)")
_COUNTERFACTUAL_NAME = re.compile(r"counterfactual(?:-w([0-9]+(?:\.[0-9]+)?))?")


def harm_weight(reward_credit: str) -> float | None:
    """w of a ``counterfactual`` credit name (``counterfactual`` -> 1.0, ``counterfactual-w0.5`` ->
    0.5); None for any other name."""
    match = _COUNTERFACTUAL_NAME.fullmatch(reward_credit) if isinstance(reward_credit, str) else None
    if match is None:
        return None
    return float(match.group(1)) if match.group(1) is not None else 1.0


def is_reward_credit(reward_credit) -> bool:
    return reward_credit in REWARD_CREDITS or harm_weight(reward_credit) is not None


def check_reward_credit(reward_credit: str) -> str:
    if not is_reward_credit(reward_credit):
        raise ValueError(f"reward_credit must be one of {CREDIT_NAMES}, got {reward_credit!r}")
    return reward_credit


def check_obs_layout(obs_layout: str) -> str:
    if not is_known_layout(obs_layout):
        raise ValueError(f"obs_layout must be one of {LAYOUT_NAMES}, e.g. {OBS_LAYOUT_V3K}2, "
                         f"got {obs_layout!r}")
    return obs_layout


def probe_set(u: np.ndarray, node: np.ndarray, n: int, k: int) -> np.ndarray:
    """(M, N) bool: the k nodes other than ``node`` (M,) that a deciding node probes, drawn from
    its scheduler uniform ``u`` (M,) in [0, 1): candidate j gets the key splitmix64(bits(u) +
    (j + 1) * golden) (a fixed integer hash, exact on every machine), and the k peers with the
    smallest keys are probed. Layout v3-k, the ``drl`` rule and the k-probe rules use this one
    draw."""
    check_probes(k, n)
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    node = np.asarray(node, dtype=np.int64).reshape(-1)
    with np.errstate(over="ignore"):
        x = u.view(np.uint64)[:, None] + np.arange(1, n + 1, dtype=np.uint64)[None] * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    x[np.arange(node.shape[0]), node] = np.iinfo(np.uint64).max   # never itself
    order = np.argsort(x, axis=1, kind="stable")[:, :k]
    out = np.zeros((node.shape[0], n), dtype=bool)
    np.put_along_axis(out, order, True, axis=1)
    return out


def node_rewards(has_task, outcome) -> np.ndarray:
    """(..., T, N): node i's own task outcome (+1 / -1) at the slot of its decision, 0 without a
    task (the ``node`` credit)."""
    return np.where(np.asarray(has_task, dtype=bool), outcome_feedback(outcome), 0.0)


def rewards(has_task, outcome, end_s, slot_s: float, reward_credit: str) -> np.ndarray:
    """The rewards of one episode, (T, N): the team reward repeated for every node under the
    ``slot`` and ``decision`` credits, each node's own under ``node``."""
    check_reward_credit(reward_credit)
    if harm_weight(reward_credit) is not None:
        raise ValueError("the counterfactual credit needs the simulator's records of the episode "
                         "(o2o.sim.harm), not only the outcomes")
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
    fixed, per_node = _sizes(obs_layout)
    return fixed + per_node * n


def layout_of(dim: int, n: int) -> str:
    """The observation layout whose observation of N = ``n`` nodes has ``dim`` columns (a
    k-probe layout's k does not follow from its size: ``o2o-obs-v3-k`` alone is returned)."""
    for layout in OBS_LAYOUTS:
        if obs_dim(n, layout) == dim:
            return layout
    if dim == V3_NODE_FEATURES + V3K_BLOCKS * n:
        return OBS_LAYOUT_V3K
    raise ValueError(f"no observation layout has {dim} columns at {n} nodes")


def probes_per_decision(n: int, obs_layout: str = OBS_LAYOUT_VERSION) -> tuple[int, str]:
    """Probe requests to other nodes that one decision from an observation of ``obs_layout``
    implies, and what they fetch: v1 needs the N - 1 peers' 1-bit overload flags for its mask
    (paper IV-B2), v2 and v3 every peer's full answer (capacity, alpha, backlog, flag), v3-k
    the full answers of its k probed peers."""
    k = layout_probes(obs_layout)
    if k is not None:
        return check_probes(k, n), "full answers"
    if is_probed(check_obs_layout(obs_layout)):
        return n - 1, "full answers"
    return n - 1, "1-bit overload flags"


def nodes_of(dim: int, obs_layout: str = OBS_LAYOUT_VERSION) -> int | None:
    """N such that ``obs_dim(N, obs_layout) == dim`` (N >= 2), or None."""
    fixed, per = _sizes(obs_layout)
    n, rest = divmod(dim - fixed, per)
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


def candidate_index(n: int, obs_layout: str = OBS_LAYOUT_V2) -> np.ndarray:
    """(N, K) column indices into an ``o2o-obs-v2`` or ``o2o-obs-v3`` observation: row j gathers
    the features of candidate destination j that a per-candidate scorer reads (``learn.nets``
    and the numpy actor use the same indices). Columns: is-itself (v2: the one-hot; v3: block
    0), r_ij, the seven v2 blocks of j, then the deciding node's own lambda, alpha, F, l and the
    task's s, c, d. The same K = ``CANDIDATE_FEATURES`` columns, in the same order, on both."""
    if obs_layout == OBS_LAYOUT_V3K or is_v3(check_obs_layout(obs_layout)):  # v3-k: v3's columns
        own = list(range(V3_NODE_FEATURES))
        blocks = [[V3_NODE_FEATURES + b * n + j for b in range(2 + V2_BLOCKS)] for j in range(n)]
        return np.array([[*blocks[j], *own] for j in range(n)], dtype=np.int64)
    if obs_layout != OBS_LAYOUT_V2:
        raise ValueError(f"the scorer reads layout {OBS_LAYOUT_V2} or {OBS_LAYOUT_V3}, not {obs_layout}")
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
CRITIC_INPUTS = ("own", "central", "pooled")
# The pooled critic (layout v3): the node part, then the mean and the maximum over the N
# candidates of every per-candidate block but "j is i" (r_ij, the seven probed blocks, l^r_ij).
POOLED_BLOCKS = slice(1, V3_BLOCKS)
POOLED_CRITIC_FEATURES = V3_NODE_FEATURES + 2 * (V3_BLOCKS - 1)


def pooled_critic_input(obs: np.ndarray) -> np.ndarray:
    """(..., 7 + 10N) observations of layout v3 -> (..., ``POOLED_CRITIC_FEATURES``): the node
    part followed by the mean and the maximum over the N candidates of blocks 1-9 (a DeepSets
    pooling, as ``set_candidate_features`` pools the scorer's candidates). Its size does not
    depend on N, so a critic reading it has weights that do not either: one value function
    for every N (``critic_input=pooled``; the torch ``Critic`` computes the same)."""
    obs = np.asarray(obs)
    n = (obs.shape[-1] - V3_NODE_FEATURES) // V3_BLOCKS
    blocks = obs[..., V3_NODE_FEATURES:].reshape(*obs.shape[:-1], V3_BLOCKS, n)[..., POOLED_BLOCKS, :]
    return np.concatenate([obs[..., :V3_NODE_FEATURES], blocks.mean(-1), blocks.max(-1)], axis=-1)


def central_columns(n: int) -> np.ndarray:
    """Columns of every node's observation that the centralized critic adds to the deciding
    node's own (centralized training, decentralized execution): its execution queue l_k and
    its task's s, c, d. (K,) indices; the critic input is own observation + these columns of
    the N observations of the same slot, node by node."""
    return np.array([n + 3, 3 * n + 3, 3 * n + 4, 3 * n + 5], dtype=np.int64)


def critic_dim(n: int, obs_layout: str = OBS_LAYOUT_VERSION, critic_input: str = "own") -> int:
    """The critic's input size: ``own`` the observation, ``central`` plus 4N values of the
    slot's global state, ``pooled`` (v3 only) ``POOLED_CRITIC_FEATURES`` whatever N."""
    if critic_input not in CRITIC_INPUTS:
        raise ValueError(f"critic_input must be one of {CRITIC_INPUTS}, got {critic_input!r}")
    if critic_input == "central" and is_v3(obs_layout):
        raise ValueError(f"the central critic reads the columns of layouts {OBS_LAYOUT_VERSION} and "
                         f"{OBS_LAYOUT_V2}, not {OBS_LAYOUT_V3}")
    if critic_input == "pooled":
        if obs_layout != OBS_LAYOUT_V3:
            raise ValueError(f"the pooled critic reads the candidate blocks of layout {OBS_LAYOUT_V3}, "
                             f"not {obs_layout}")
        return POOLED_CRITIC_FEATURES
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
    """Builds observations and masks for one scenario and network, batched over M nodes.

    Layouts v1 and v2 scale by the scenario's maxima; v3 (and v3-k) by ``scales``
    (``FeatureScales``, default: its defaults), never by the scenario's ranges. ``scales`` is
    refused for v1 and v2, which have none. Layout v3-k: ``probes`` = its k (checked against
    N), and ``observe`` and ``mask`` need the deciding nodes' scheduler uniforms ``u``."""

    def __init__(self, scenario: Scenario, network: Network, obs_layout: str = OBS_LAYOUT_VERSION,
                 scales: FeatureScales | None = None):
        n = network.n
        self.n = n
        self.obs_layout = check_obs_layout(obs_layout)
        self.probes = layout_probes(obs_layout)
        if self.probes is not None:
            check_probes(self.probes, n)
        self.dim = obs_dim(n, obs_layout)
        self.network = network
        self.scenario = scenario
        if is_v3(obs_layout):
            self._init_v3(scenario, network, scales or FeatureScales())
            return
        if scales is not None:
            raise ValueError(f"feature scales belong to layout {OBS_LAYOUT_V3}, not {obs_layout}")
        self.scales = None
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

    def _init_v3(self, scenario: Scenario, network: Network, scales: FeatureScales) -> None:
        """The constant parts of observation v3, from the network's arrays and ``scales`` only
        (``slot_s`` turns lambda into a rate per second)."""
        self.scales = scales
        self.capacity_scale, self.backlog_scale = scales.capacity_hz, scales.backlog_s
        self.queue_scale = scales.queue_tasks
        self.task_scale = np.array([scales.task_bytes, scales.task_cycles, scales.deadline_s])
        own = np.stack([network.arrival_prob / scenario.slot_s / scales.arrivals_per_s,
                        network.node_fail_rate / scales.fail_rate_per_s,
                        network.capacity_hz / scales.capacity_hz], axis=1)
        self.static = np.clip(own, 0.0, 1.0)                              # (N, 3)
        rate = np.clip(network.link_rate_Bps / scales.rate_Bps, 0.0, 1.0)
        np.fill_diagonal(rate, 0.0)                                       # nothing is sent to itself
        self.rate = rate                                                  # (N, N)
        from o2o.core.observe_loops import fill_mask

        self._fill_mask = fill_mask

    def known(self, node, has_task, u) -> np.ndarray:
        """(M, N) bool, layout v3-k: the candidates a deciding node knows, itself and (with a
        task) its k probed peers (``probe_set`` of its uniform ``u[:, PROBE_SET_UNIFORM]``)."""
        node = np.asarray(node, dtype=np.int64)
        if u is None:
            raise ValueError(f"observation {self.obs_layout} needs the scheduler uniforms u of the "
                             "deciding nodes (which peers they probed)")
        u = np.asarray(u, dtype=np.float64)
        probed = probe_set(u[:, PROBE_SET_UNIFORM], node, self.n, self.probes)
        probed &= np.asarray(has_task, dtype=bool)[:, None]
        probed[np.arange(node.shape[0]), node] = True
        return probed

    def _observe_v3(self, node, exec_len, recv_len, has, size_bytes, cycles, deadline_s,
                    probed, u=None) -> np.ndarray:
        """(M, 7 + 10N) float64: the node part, then the ten candidate blocks (module docstring);
        blocks 2-8 are the v2 blocks (``_probed_blocks``) at the v3 scales. Layout v3-k
        (7 + 11N): blocks 2-8 of a peer it did not probe are 0, and block 10 says which it knows."""
        m, n = node.shape[0], self.n
        clip = lambda x: np.clip(x, 0.0, 1.0)  # noqa: E731
        obs = np.zeros((m, self.dim))
        obs[:, :3] = self.static[node]
        obs[:, 3] = clip(np.asarray(exec_len, dtype=np.float64) / self.queue_scale)
        task = np.stack([size_bytes, cycles, deadline_s], axis=1)
        obs[:, 4:7] = np.where(has[:, None], clip(np.where(has[:, None], task, 0.0) / self.task_scale), 0.0)
        blocks = np.zeros((m, V3_BLOCKS if self.probes is None else V3K_BLOCKS, n))
        itself = np.arange(n)[None] == node[:, None]
        blocks[:, 0] = itself
        blocks[:, 1] = self.rate[node]
        probe_blocks = blocks[:, 2:2 + V2_BLOCKS]
        with np.errstate(invalid="ignore"):  # v3-k: unknown (NaN) answers of unprobed peers
            self._probed_blocks(probe_blocks, node, has, size_bytes, cycles, deadline_s, *probed)
        recv = np.asarray(recv_len, dtype=np.float64)
        blocks[:, 2 + V2_BLOCKS] = np.where(itself, 0.0, clip(recv / self.queue_scale))
        if self.probes is not None:
            known = self.known(node, has, u)
            probe_blocks[:] = np.where(known[:, None, :], probe_blocks, 0.0)
            blocks[:, V3_BLOCKS] = known
        obs[:, V3_NODE_FEATURES:] = blocks.reshape(m, -1)
        return obs

    def observe(self, node, exec_len, recv_len, has_task, size_bytes, cycles, deadline_s,
                probed=None, u=None) -> np.ndarray:
        """(M, D) float32. ``recv_len`` is (M, N): tasks in flight from j to node i. For layouts
        v2 and v3, ``probed = (exec_backlog_s, send_backlog_s, overloaded)``, each (M, N): every node's
        execution backlog and overload flag as node i probed them, and i's own send backlogs.
        Layout v3-k also needs ``u`` (M, SCHED_UNIFORMS), the deciding nodes' scheduler
        uniforms (which peers they probed; the answers of the others are not read)."""
        node = np.asarray(node, dtype=np.int64)
        m = node.shape[0]
        has = np.asarray(has_task, dtype=bool)
        size_bytes, cycles, deadline_s = (np.asarray(x, dtype=np.float64) for x in (size_bytes, cycles, deadline_s))
        if is_probed(self.obs_layout) and probed is None:
            raise ValueError(f"observation {self.obs_layout} needs the probed backlogs and flags")
        if is_v3(self.obs_layout):
            return self._observe_v3(node, exec_len, recv_len, has, size_bytes, cycles, deadline_s,
                                    probed, u).astype(np.float32)
        obs = np.empty((m, self.dim))
        self._fill_v1(obs, self.static, node, np.asarray(exec_len, dtype=np.float64),
                      np.asarray(recv_len, dtype=np.float64), self.others, has, size_bytes, cycles,
                      deadline_s, self.queue_scale, self.task_scale)
        if self.obs_layout == OBS_LAYOUT_V2:
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
        """Fill the seven v2 blocks, ``out`` (M, 7, N), at this observer's capacity and backlog
        scales (v2: the scenario's; v3: ``FeatureScales``)."""
        net, n = self.network, self.n
        clip = lambda x: np.minimum(x, 1.0)  # noqa: E731  (every value here is >= 0)
        out[:, 0] = clip(net.capacity_hz[None] / self.capacity_scale)
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

    def mask(self, node, has_task, overloaded, u=None) -> np.ndarray:
        """(M, N+1) bool: which actions are available (paper IV-B). Layout v3-k (``u`` as in
        ``observe``): a peer it did not probe is masked like an overloaded one."""
        overloaded = np.asarray(overloaded, dtype=bool)
        if self.probes is not None:
            overloaded = overloaded | ~self.known(node, has_task, u)
        out = np.empty((overloaded.shape[0], self.n + 1), dtype=bool)
        self._fill_mask(out, np.asarray(node, dtype=np.int64), np.asarray(has_task, dtype=bool), overloaded)
        return out

