"""The decentralized heuristics of the paper (V-B), each written once over a ``NodeView``."""

from __future__ import annotations

import numpy as np

from o2o.core.decpomdp import PROBE_SET_UNIFORM, check_probes, probe_set
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


def check_params(name: str, values: dict[str, float], bounds: dict[str, tuple[float, float]]) -> None:
    """Refuse a parameter outside its range: (lo, hi] for a margin (a fraction of the
    deadline, so > 0), [lo, hi] for the others."""
    for key, value in values.items():
        lo, hi = bounds[key]
        margin = key.endswith("margin")
        if not (np.isfinite(value) and (value > lo if margin else value >= lo) and value <= hi):
            span = f"({lo:g}, {hi:g}]" if margin else f"[{lo:g}, {hi:g}]"
            raise ValueError(f"{name} {key} must lie in {span}, got {value:g}")


class Spread(Rule):
    """Capacity-proportional spreading with a local shortcut, from what a node knows at its
    decision (paper IV-B: its own queue, the task, its links, the peers' capacities and 1-bit
    overload flags):

    * keep the task local when the own execution backlog plus the task's execution time is
      within ``local_margin`` of the deadline;
    * otherwise send it to a node j drawn with probability proportional to F_j among the nodes
      that are not overloaded (itself always allowed) and where the task's nominal time
      ``T^t_ij + T^c_j`` (queues ignored) is within ``peer_margin`` of the deadline; when no
      node is, among all allowed nodes.

    Drawing (rather than taking the best node) keeps the nodes of one slot, which decide at
    once without seeing each other's choices, from all sending to the same fast node. It probes
    every node for its flag and capacity, and itself for its backlog."""

    name = "spread"
    reads = frozenset({"link_rate_Bps"})
    # Tunable parameters (o2o tune) with their defaults and ranges.
    PARAMS = {"local_margin": 0.7, "peer_margin": 0.7}
    BOUNDS = {"local_margin": (0.0, 10.0), "peer_margin": (0.0, 10.0)}

    def __init__(self, local_margin: float = 0.7, peer_margin: float = 0.7):
        values = {"local_margin": float(local_margin), "peer_margin": float(peer_margin)}
        check_params(self.name, values, self.BOUNDS)
        self.local_margin, self.peer_margin = values["local_margin"], values["peer_margin"]

    def params(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.PARAMS}

    def probe_targets(self, view):
        return np.ones((view.m, view.n), dtype=bool)

    def probabilities(self, view: NodeView, probes: ProbeAnswers) -> np.ndarray:
        """(M, N) probability of each destination."""
        rows = np.arange(view.m)
        allowed = ~np.asarray(probes.overloaded, dtype=bool)
        allowed[rows, view.node] = True
        tx_s = view.size_bytes[:, None] / view.link_rate_Bps
        tx_s[rows, view.node] = 0.0
        nominal_s = tx_s + view.cycles[:, None] / probes.capacity_hz
        peer_budget_s = self.peer_margin * view.deadline_s
        weight = probes.capacity_hz * allowed * (nominal_s <= peer_budget_s[:, None])
        none = weight.sum(axis=1) == 0
        weight[none] = probes.capacity_hz[none] * allowed[none]
        probs = weight / weight.sum(axis=1, keepdims=True)
        own_s = probes.exec_backlog_s[rows, view.node] + view.cycles / probes.capacity_hz[rows, view.node]
        local = own_s <= self.local_margin * view.deadline_s
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


class SlackReliable(Spread):
    """Slack-and-reliability sampling: the same information as observation v2 (paper IV-B with
    the probes of every node): the queue-aware estimated completion est_ij and reliability
    rel_ij of the task on every candidate (paper eqs. 4-5), the candidates' overload flags, its
    own backlog and its send backlogs.

    * keep the task local when its own estimate est_ii is within ``local_margin`` of the
      deadline d;
    * otherwise draw a node among the feasible ones: not overloaded (itself always allowed) and
      est_ij within ``peer_margin`` of d, with probability proportional to
      ``rel_ij ** rel_power * (slack_ij / d) ** slack_power``, slack_ij = d - est_ij;
    * when no node is feasible, take the allowed node with the earliest estimate.

    The name says what it weighs: slack (time left before the deadline) and reliability. It
    probes every node (N - 1 requests per task, like ``esf``)."""

    name = "slack-reliable"
    reads = frozenset({"link_rate_Bps", "link_fail_rate", "send_backlog_s"})
    PARAMS = {"local_margin": 0.7, "peer_margin": 0.9, "rel_power": 1.0, "slack_power": 1.0}
    BOUNDS = {"local_margin": (0.0, 1.0), "peer_margin": (0.0, 1.0), "rel_power": (0.0, 1000.0),
              "slack_power": (0.0, 1000.0)}

    def __init__(self, local_margin: float = 0.7, peer_margin: float = 0.9, rel_power: float = 1.0,
                 slack_power: float = 1.0):
        values = {"local_margin": float(local_margin), "peer_margin": float(peer_margin),
                  "rel_power": float(rel_power), "slack_power": float(slack_power)}
        check_params(self.name, values, self.BOUNDS)
        for key, value in values.items():
            setattr(self, key, value)

    def probabilities(self, view: NodeView, probes: ProbeAnswers) -> np.ndarray:
        """(M, N) probability of each destination."""
        rows = np.arange(view.m)
        every = np.broadcast_to(np.arange(view.n), (view.m, view.n))
        est_s, rel = estimate(view, probes, every)
        d = view.deadline_s[:, None]
        allowed = ~np.asarray(probes.overloaded, dtype=bool)
        allowed[rows, view.node] = True
        weight = slack_reliable_weights(est_s, rel, allowed, d, self.peer_margin, self.rel_power, self.slack_power)
        total = weight.sum(axis=1, keepdims=True)
        probs = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
        none = total[:, 0] <= 0
        if none.any():
            earliest = np.argmin(np.where(allowed, est_s, np.inf), axis=1)
            probs[none] = 0.0
            probs[rows[none], earliest[none]] = 1.0
        local = est_s[rows, view.node] <= self.local_margin * view.deadline_s
        probs[local] = 0.0
        probs[rows[local], view.node[local]] = 1.0
        return probs


def slack_reliable_weights(est_s, rel, allowed, d, peer_margin, rel_power, slack_power) -> np.ndarray:
    """(M, N) ``slack-reliable``'s unnormalised draw weights: ``rel ** rel_power * (slack / d) **
    slack_power`` on the allowed candidates that complete within ``peer_margin`` of d (``est_s``:
    time to completion, ``d``: (M, 1) deadlines; the parameters scalars or (M, 1)), 0 elsewhere."""
    feasible = allowed & (est_s <= peer_margin * d)
    slack = np.clip((d - est_s) / d, 0.0, 1.0)
    return np.where(feasible, np.power(rel, rel_power) * np.power(slack, slack_power), 0.0)


class SlackReliableK(SlackReliable):
    """``slack-reliable`` with RATC's kind of probe budget: each decision probes exactly
    ``probes`` = k nodes other than itself (1 <= k <= N - 1; k = 2 is RATC's budget), the same
    k that a learner on observation ``o2o-obs-v3-k<k>`` probes (``o2o.core.decpomdp.probe_set``
    of the task's uniform ``u[:, PROBE_SET_UNIFORM]``), and chooses as ``slack-reliable`` among
    itself and those k: a peer it did not probe is never a candidate (treated as overloaded).
    The same information as that learner's observation, so the fair rule to compare it with."""

    name = "slack-reliable-k"
    PARAMS = {**SlackReliable.PARAMS, "probes": 2}
    BOUNDS = {**SlackReliable.BOUNDS, "probes": (1.0, 1e6)}

    def __init__(self, local_margin: float = 0.7, peer_margin: float = 0.9, rel_power: float = 1.0,
                 slack_power: float = 1.0, probes: float = 2):
        super().__init__(local_margin, peer_margin, rel_power, slack_power)
        if not float(probes).is_integer():
            raise ValueError(f"{self.name} probes must be a whole number of nodes, got {probes:g}")
        check_params(self.name, {"probes": float(probes)}, {"probes": self.BOUNDS["probes"]})
        self.probes = int(probes)

    def params(self) -> dict[str, float]:
        return {**super().params(), "probes": self.probes}

    def check_nodes(self, n: int) -> None:
        """Refuse a network of N nodes where k > N - 1 (``ProbeBudgetError``, a user error)."""
        check_probes(self.probes, n)

    def _probed(self, view: NodeView) -> np.ndarray:
        """(M, N): the k probed peers (``probe_set``; k > N - 1 is refused there)."""
        return probe_set(view.u[:, PROBE_SET_UNIFORM], view.node, view.n, self.probes)

    def probe_targets(self, view):
        targets = self._probed(view)
        targets[np.arange(view.m), view.node] = True   # itself: no request
        return targets

    def probabilities(self, view: NodeView, probes: ProbeAnswers) -> np.ndarray:
        unknown = ~self.probe_targets(view)
        restricted = ProbeAnswers(capacity_hz=np.where(unknown, 1.0, probes.capacity_hz),
                                  node_fail_rate=np.where(unknown, 0.0, probes.node_fail_rate),
                                  exec_backlog_s=np.where(unknown, 0.0, probes.exec_backlog_s),
                                  overloaded=np.asarray(probes.overloaded, dtype=bool) | unknown)
        return super().probabilities(view, restricted)


class ESF(Rule):
    """Earliest Stated Finish: probe every node, take the lowest estimate."""

    name = "esf"

    def probe_targets(self, view):
        return np.ones((view.m, view.n), dtype=bool)

    def choose(self, view, probes):
        every = np.broadcast_to(np.arange(view.n), (view.m, view.n))
        est, _ = estimate(view, probes, every)
        return np.argmin(est, axis=1)
