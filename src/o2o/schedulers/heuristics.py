"""The decentralized heuristics of the paper (V-B), each written once over a ``NodeView``."""

from __future__ import annotations

import numpy as np

from o2o.schedulers.base import (
    NodeView,
    ProbeAnswers,
    estimate,
    rows_mask,
    sample_inverse_cdf,
    two_distinct,
    two_distinct_others,
)


class Rule:
    """A decentralized scheduler: which nodes to probe, then where to send each task."""

    name = "rule"
    # The per-peer NodeView fields the rule reads; the simulator gathers only these.
    reads: frozenset[str] = frozenset({"link_rate_Bps", "link_fail_rate", "send_backlog_s"})

    def probe_targets(self, view: NodeView) -> np.ndarray:
        return np.zeros((view.m, view.n), dtype=bool)

    def choose(self, view: NodeView, probes: ProbeAnswers) -> np.ndarray:
        raise NotImplementedError

    def action_prob(self, view: NodeView, actions: np.ndarray) -> np.ndarray | None:
        """Probability the rule gave to its own action, when it is defined; None otherwise."""
        return None


class RandomRule(Rule):
    """Uniform over all N nodes, itself included."""

    name = "random"
    reads = frozenset()

    def choose(self, view, probes):
        return np.minimum((view.u[:, 0] * view.n).astype(np.int64), view.n - 1)

    def action_prob(self, view, actions):
        return np.full(view.m, 1.0 / view.n)


class LocalRule(Rule):
    """Always itself."""

    name = "local"
    reads = frozenset()

    def choose(self, view, probes):
        return view.node.astype(np.int64)

    def action_prob(self, view, actions):
        return np.ones(view.m)


class RATC(Rule):
    """Reliability-Aware Two Choices: probe two distinct random nodes (itself may be one); if both
    finish within the deadline take the more reliable, otherwise the earlier (paper V-B)."""

    name = "ratc"

    def _pair(self, view):
        return two_distinct(view.u[:, 0], view.u[:, 1], view.n)

    def probe_targets(self, view):
        return rows_mask(view.m, view.n, self._pair(view))

    def choose(self, view, probes):
        pair = self._pair(view)
        est, rel = estimate(view, probes, pair)
        both_feasible = (est <= view.deadline_s[:, None]).all(axis=1)
        pick = np.where(both_feasible, np.argmax(rel, axis=1), np.argmin(est, axis=1))
        return pair[np.arange(view.m), pick]


class RDA(Rule):
    """Reactive Distributed Algorithm [9]: itself while its waiting count is below its overload
    threshold; otherwise probe two random other nodes and take the earlier estimate."""

    name = "rda"

    def _pair(self, view):
        return two_distinct_others(view.u[:, 0], view.u[:, 1], view.node.astype(np.int64), view.n)

    def _stay(self, view):
        return view.exec_wait < view.overload_threshold

    def probe_targets(self, view):
        targets = rows_mask(view.m, view.n, self._pair(view))
        targets[self._stay(view)] = False
        return targets

    def choose(self, view, probes):
        pair = self._pair(view)
        est, _ = estimate(view, probes, pair)
        offload = pair[np.arange(view.m), np.argmin(est, axis=1)]
        return np.where(self._stay(view), view.node.astype(np.int64), offload)


class Spread(Rule):
    """Capacity-proportional spreading with a local shortcut, from what a node knows at its
    decision (paper IV-B: its own queue, the task, its links, the peers' capacities and 1-bit
    overload flags):

    * keep the task local when the own execution backlog plus the task's execution time is
      within ``margin`` of the deadline;
    * otherwise send it to a node j drawn with probability proportional to F_j among the nodes
      that are not overloaded (itself always allowed) and where the task's nominal time
      ``T^t_ij + T^c_j`` (queues ignored) is within ``margin`` of the deadline; when no node is,
      among all allowed nodes.

    Drawing (rather than taking the best node) keeps the nodes of one slot, which decide at
    once without seeing each other's choices, from all sending to the same fast node. It probes
    every node for its flag and capacity, and itself for its backlog."""

    name = "spread"
    reads = frozenset({"link_rate_Bps"})
    queues = False  # feasibility by the nominal time (queues ignored)

    def __init__(self, margin: float = 0.7):
        if not margin > 0:
            raise ValueError(f"spread margin must be > 0, got {margin}")
        self.margin = float(margin)

    def probe_targets(self, view):
        return np.ones((view.m, view.n), dtype=bool)

    def probabilities(self, view: NodeView, probes: ProbeAnswers) -> np.ndarray:
        """(M, N) probability of each destination."""
        rows = np.arange(view.m)
        allowed = ~np.asarray(probes.overloaded, dtype=bool)
        allowed[rows, view.node] = True
        if self.queues:
            every = np.broadcast_to(np.arange(view.n), (view.m, view.n))
            nominal_s, _ = estimate(view, probes, every)
        else:
            tx_s = view.size_bytes[:, None] / view.link_rate_Bps
            tx_s[rows, view.node] = 0.0
            nominal_s = tx_s + view.cycles[:, None] / probes.capacity_hz
        budget_s = self.margin * view.deadline_s
        weight = probes.capacity_hz * allowed * (nominal_s <= budget_s[:, None])
        none = weight.sum(axis=1) == 0
        weight[none] = probes.capacity_hz[none] * allowed[none]
        probs = weight / weight.sum(axis=1, keepdims=True)
        own_s = probes.exec_backlog_s[rows, view.node] + view.cycles / probes.capacity_hz[rows, view.node]
        local = own_s <= budget_s
        probs[local] = 0.0
        probs[rows[local], view.node[local]] = 1.0
        return probs

    def choose(self, view, probes):
        probs = self.probabilities(view, probes)
        self._last = (id(view), probs)
        return sample_inverse_cdf(probs, view.u[:, 0])

    def action_prob(self, view, actions):
        if getattr(self, "_last", None) is None or self._last[0] != id(view):
            return None
        return self._last[1][np.arange(view.m), np.asarray(actions, dtype=np.int64)]


class SpreadEst(Spread):
    """``spread`` with feasibility judged by the estimated completion est_ij (paper eqs. 4-5),
    i.e. with the probed backlogs and its own send backlogs: what a node knows with the
    probes of observation v2. A yardstick for the learned policies on layout v2."""

    name = "spread-est"
    reads = frozenset({"link_rate_Bps", "link_fail_rate", "send_backlog_s"})
    queues = True


class ESF(Rule):
    """Earliest Stated Finish: probe every node, take the lowest estimate."""

    name = "esf"

    def probe_targets(self, view):
        return np.ones((view.m, view.n), dtype=bool)

    def choose(self, view, probes):
        every = np.broadcast_to(np.arange(view.n), (view.m, view.n))
        est, _ = estimate(view, probes, every)
        return np.argmin(est, axis=1)
