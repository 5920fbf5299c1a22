"""The decentralized heuristics of the paper (V-B), each written once over a ``NodeView``."""

from __future__ import annotations

import numpy as np

from o2o.schedulers.base import (
    NodeView,
    ProbeAnswers,
    estimate,
    rows_mask,
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


class ESF(Rule):
    """Earliest Stated Finish: probe every node, take the lowest estimate."""

    name = "esf"

    def probe_targets(self, view):
        return np.ones((view.m, view.n), dtype=bool)

    def choose(self, view, probes):
        every = np.broadcast_to(np.arange(view.n), (view.m, view.n))
        est, _ = estimate(view, probes, every)
        return np.argmin(est, axis=1)
