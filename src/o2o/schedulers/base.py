"""What a deciding node knows, and the estimates of the paper's schedulers (V-B), written once
over arrays.

A rule sees a batch of M deciding nodes (``NodeView``): the simulator hands it every node with a
task in every episode of its batch, a testbed node hands it a batch of one. A rule first names
the nodes it probes (``probe_targets``), the caller answers those probes (``ProbeAnswers``: from
its arrays in the simulator, with real requests on the testbed) and the rule then chooses
(``choose``). Randomness comes in as uniforms drawn per episode (``NodeView.u``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from o2o.core.decpomdp import completion_estimate


@dataclass
class NodeView:
    """Own knowledge of M deciding nodes; (M,) arrays unless noted, N = nodes. Per-peer fields
    a rule does not read (see ``Rule.reads``) may be None."""

    n: int                       # N, the number of nodes
    node: np.ndarray             # i
    size_bytes: np.ndarray       # s of the task to place
    cycles: np.ndarray           # c
    deadline_s: np.ndarray       # d, relative (the decision is made at the task's arrival)
    exec_len: np.ndarray         # tasks in its own execution queue (running one included)
    exec_wait: np.ndarray        # tasks waiting in its own execution queue
    overload_threshold: np.ndarray  # its own overload threshold
    recv_len: np.ndarray         # (M, N) tasks in flight from j to i (0 at j = i)
    link_rate_Bps: np.ndarray    # (M, N) r_ij of its outgoing links
    link_fail_rate: np.ndarray   # (M, N) beta_ij of its outgoing links
    send_backlog_s: np.ndarray   # (M, N) remaining transmission work queued on link i -> j
    u: np.ndarray                # (M, SCHED_UNIFORMS) uniforms in [0, 1)

    @property
    def m(self) -> int:
        return int(self.node.shape[0])

    def select(self, rows: np.ndarray) -> "NodeView":
        pick = lambda v: v[rows] if isinstance(v, np.ndarray) else v  # noqa: E731
        return NodeView(**{f.name: pick(getattr(self, f.name)) for f in fields(self)})


@dataclass
class ProbeAnswers:
    """(M, N) answers of probed nodes (paper IV-B2); entries of unprobed nodes are unused."""

    capacity_hz: np.ndarray
    node_fail_rate: np.ndarray
    exec_backlog_s: np.ndarray
    overloaded: np.ndarray


def estimate(view: NodeView, probes: ProbeAnswers, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """est_ij and rel_ij (paper eqs. 4-5, V-B) for the candidate nodes ``cols`` (M, k).

    est_ij = sendbacklog_ij + T^t_ij + backlog_j + T^c_j, transmission terms 0 when j = i;
    rel_ij = exp(-beta_ij T^t_ij - alpha_j T^c_j) (paper eqs. 4-5).
    """
    take = lambda a: np.take_along_axis(a, cols, axis=1)  # noqa: E731
    est, rel, _ = completion_estimate(
        view.size_bytes[:, None], view.cycles[:, None], take(view.link_rate_Bps),
        take(view.send_backlog_s), take(probes.capacity_hz), take(probes.exec_backlog_s),
        take(view.link_fail_rate), take(probes.node_fail_rate), cols != view.node[:, None])
    return est, rel


def two_distinct(u0: np.ndarray, u1: np.ndarray, n: int) -> np.ndarray:
    """Two distinct indices in [0, n) from two uniforms, (M, 2)."""
    first = np.minimum((u0 * n).astype(np.int64), n - 1)
    second = np.minimum((u1 * (n - 1)).astype(np.int64), n - 2)
    second = second + (second >= first)
    return np.stack([first, second], axis=1)


def two_distinct_others(u0: np.ndarray, u1: np.ndarray, node: np.ndarray, n: int) -> np.ndarray:
    """Two distinct indices in [0, n) other than ``node``, (M, 2); needs n >= 3 (else repeats)."""
    if n < 3:
        other = (node + 1) % n
        return np.stack([other, other], axis=1)
    pair = two_distinct(u0, u1, n - 1)
    return pair + (pair >= node[:, None])


def rows_mask(m: int, n: int, cols: np.ndarray) -> np.ndarray:
    """(M, N) boolean mask with True at the given (M, k) column indices."""
    mask = np.zeros((m, n), dtype=bool)
    np.put_along_axis(mask, cols, True, axis=1)
    return mask


def sample_inverse_cdf(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One action per row: the first index whose cumulative probability exceeds ``u`` in [0, 1).
    Actions of probability 0 are never chosen (rounding at the top falls back on the last
    action of positive probability)."""
    cdf = np.cumsum(probs, axis=-1)
    above = cdf > np.asarray(u)[:, None]
    last_positive = probs.shape[-1] - 1 - np.argmax((probs > 0)[:, ::-1], axis=-1)
    return np.where(above.any(axis=-1), np.argmax(above, axis=-1), last_positive).astype(np.int64)
