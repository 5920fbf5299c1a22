"""``spread`` with its two margins at (0.7, 0.7) makes exactly the decisions of the one-margin
rule it replaced (kept here as it was), on a simulated batch."""

import numpy as np

from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.schedulers import Spread
from o2o.schedulers.base import sample_inverse_cdf
from o2o.schedulers.heuristics import Rule
from o2o.sim.rollout import rollout


class OneMarginSpread(Rule):
    """The rule before it had two margins, unchanged."""

    name = "spread"
    reads = frozenset({"link_rate_Bps"})

    def __init__(self, margin=0.7):
        self.margin = float(margin)

    def probe_targets(self, view):
        return np.ones((view.m, view.n), dtype=bool)

    def probabilities(self, view, probes):
        rows = np.arange(view.m)
        allowed = ~np.asarray(probes.overloaded, dtype=bool)
        allowed[rows, view.node] = True
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
        return self._last[1][np.arange(view.m), np.asarray(actions, dtype=np.int64)]


def test_spread_at_default_margins_equals_the_one_margin_rule_bit_for_bit():
    sc = load_scenario("paper-sim", ["nodes=8", "slots=30"])
    net = sample_network(sc, 3)
    episodes = sample_episodes(sc, net, [11, 12, 13, 14])
    new = rollout(sc, net, episodes, Spread(local_margin=0.7, peer_margin=0.7))
    old = rollout(sc, net, episodes, OneMarginSpread(0.7))
    assert np.array_equal(new.actions, old.actions)
    assert np.array_equal(new.action_prob, old.action_prob, equal_nan=True)
    a, b = new.engine.metrics(), old.engine.metrics()
    assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    # The batch is not trivial: some tasks stay local and some are spread.
    has_task = new.actions < sc.nodes
    local = new.actions == np.arange(sc.nodes)
    assert (has_task & local).any() and (has_task & ~local).any()
    # And the default is (0.7, 0.7).
    assert Spread().params() == {"local_margin": 0.7, "peer_margin": 0.7}
