"""The decentralized rules (paper V-B) on hand-made views."""

import numpy as np
import pytest

from o2o.core.episodes import SCHED_UNIFORMS
from o2o.schedulers import ESF, RATC, RDA, LocalRule, RandomRule
from o2o.schedulers.base import (
    NodeView,
    ProbeAnswers,
    estimate,
    two_distinct,
    two_distinct_others,
)


def view(node=0, n=3, size=1e6, cycles=1e9, deadline=2.0, exec_wait=0, threshold=3.0, u=(0.0, 0.0),
         rate=1e6, beta=0.0, send_backlog=0.0):
    uu = np.zeros((1, SCHED_UNIFORMS))
    uu[0, :2] = u
    full = lambda x: np.broadcast_to(np.asarray(x, dtype=float), (1, n)).copy()  # noqa: E731
    return NodeView(n=n, node=np.array([node]), size_bytes=np.array([size]), cycles=np.array([cycles]),
                    deadline_s=np.array([deadline]), exec_len=np.array([exec_wait]),
                    exec_wait=np.array([exec_wait]), overload_threshold=np.array([threshold]),
                    recv_len=np.zeros((1, n)), link_rate_Bps=full(rate), link_fail_rate=full(beta),
                    send_backlog_s=full(send_backlog), u=uu)


def probes(capacity, alpha, backlog, overloaded=None):
    n = len(capacity)
    return ProbeAnswers(capacity_hz=np.array([capacity], float), node_fail_rate=np.array([alpha], float),
                        exec_backlog_s=np.array([backlog], float),
                        overloaded=np.array([overloaded or [False] * n]))


def test_estimate_by_hand():
    v = view(node=0, send_backlog=[0.0, 0.5, 0.0], beta=[0, 0.1, 0.2])
    p = probes([1e9, 2e9, 1e9], [0.1, 0.2, 0.0], [0.3, 0.0, 1.0])
    est, rel = estimate(v, p, np.array([[0, 1, 2]]))
    # Local: 0.3 + 1.0; to 1: 0.5 + 1.0 + 0 + 0.5; to 2: 1.0 + 1.0 + 1.0.
    assert est[0].tolist() == pytest.approx([1.3, 2.0, 3.0])
    assert rel[0].tolist() == pytest.approx([np.exp(-0.1), np.exp(-0.1 - 0.1), np.exp(-0.2)])


def test_ratc_prefers_reliability_when_both_are_feasible_else_speed():
    p = probes([1e9, 1e9, 1e9], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0])
    # u picks nodes 0 and 1: local est 1.0 (rel e^-0.5), node 1 est 2.5 (rel 1).
    u = (0.0, 0.0)
    assert two_distinct(np.array([0.0]), np.array([0.0]), 3).tolist() == [[0, 1]]
    assert RATC().choose(view(deadline=3.0, u=u), p).tolist() == [1]   # both feasible: reliable
    assert RATC().choose(view(deadline=2.0, u=u), p).tolist() == [0]   # node 1 late: earlier one
    targets = RATC().probe_targets(view(u=u))
    assert targets.tolist() == [[True, True, False]]


def test_rda_stays_local_below_threshold_and_else_takes_earlier_of_two_others():
    p = probes([1e9, 1e9, 4e9], [0, 0, 0], [0.0, 0.5, 0.0])
    assert RDA().choose(view(exec_wait=2, threshold=3.0), p).tolist() == [0]
    assert not RDA().probe_targets(view(exec_wait=2, threshold=3.0)).any()
    busy = view(exec_wait=3, threshold=3.0)
    assert RDA().probe_targets(busy).tolist() == [[False, True, True]]
    assert RDA().choose(busy, p).tolist() == [2]


def test_esf_takes_lowest_estimate_over_all():
    p = probes([1e9, 1e9, 1e9], [0, 0, 0], [5.0, 0.2, 0.1])
    assert ESF().choose(view(send_backlog=[0, 0, 0.5]), p).tolist() == [1]
    assert ESF().probe_targets(view()).all()


def test_random_and_local():
    p = probes([1e9] * 4, [0] * 4, [0] * 4)
    assert LocalRule().choose(view(node=2, n=4), p).tolist() == [2]
    picks = [RandomRule().choose(view(n=4, u=(u, 0)), p)[0] for u in np.linspace(0, 0.999, 400)]
    assert np.bincount(picks, minlength=4).tolist() == [100, 100, 100, 100]


def test_two_distinct_draws_are_distinct_and_cover_all_pairs():
    g = np.linspace(0, 0.999, 50)
    u0, u1 = np.meshgrid(g, g)
    pairs = two_distinct(u0.ravel(), u1.ravel(), 5)
    assert np.all(pairs[:, 0] != pairs[:, 1])
    assert len({tuple(p) for p in pairs}) == 20
    node = np.full(u0.size, 2)
    others = two_distinct_others(u0.ravel(), u1.ravel(), node, 5)
    assert np.all(others != 2) and np.all(others[:, 0] != others[:, 1])
    assert len({tuple(p) for p in others}) == 12


def test_spread_keeps_a_task_local_when_its_own_queue_finishes_it_in_time():
    from o2o.schedulers import Spread

    # Own backlog 0.3 s + 1e9 / 1e9 = 1.3 s <= 0.7 * 2.0 = 1.4 s: local, probability 1.
    p = probes([1e9, 4e9, 2e9], [0, 0, 0], [0.3, 0.0, 0.0])
    rule = Spread(local_margin=0.7, peer_margin=0.7)
    v = view(deadline=2.0, u=(0.99, 0.0))
    assert rule.choose(v, p).tolist() == [0]
    assert rule.action_prob(v, np.array([0])).tolist() == [1.0]
    # 0.5 s of backlog: 1.5 s > 1.4 s, so it spreads: every node is feasible (1 s of
    # transmission + at most 1 s of execution > 1.4 s for nodes 0 and 2... by hand below).
    p = probes([1e9, 4e9, 2e9], [0, 0, 0], [0.5, 0.0, 0.0])
    # Itself: 1.0 s <= 1.4 s, weight 1e9; node 1: 1 + 0.25 = 1.25 s, weight 4e9; node 2:
    # 1 + 0.5 = 1.5 s > 1.4 s, infeasible.
    assert rule.probabilities(v, p)[0].tolist() == pytest.approx([0.2, 0.8, 0.0])


def test_spread_draws_in_proportion_to_capacity_among_feasible_allowed_nodes():
    from o2o.schedulers import Spread

    rule = Spread(local_margin=0.7, peer_margin=0.7)
    # Task 1e6 B at 1e6 B/s = 1 s of transmission, 1e9 cycles. Deadline 4 s, budget 2.8 s.
    # Node 0 (itself): backlog 5 s, not local. Node 1: 1 + 0.25 s feasible, F = 4e9.
    # Node 2: 1 + 0.5 s feasible, F = 2e9. Node 3: 1 + 2 s = 3 s > 2.8 s: infeasible.
    # Node 4: feasible but overloaded. Itself: 1 s exec, feasible, F = 1e9.
    p = probes([1e9, 4e9, 2e9, 0.5e9, 4e9], [0] * 5, [5.0, 0, 0, 0, 0],
               overloaded=[False, False, False, False, True])
    v = view(n=5, deadline=4.0)
    assert rule.probabilities(v, p)[0].tolist() == pytest.approx([1 / 7, 4 / 7, 2 / 7, 0.0, 0.0])
    picks = [rule.choose(view(n=5, deadline=4.0, u=(u, 0)), p)[0] for u in np.linspace(0, 0.9999, 700)]
    assert np.bincount(picks, minlength=5).tolist() == [100, 400, 200, 0, 0]
    assert rule.probe_targets(v).all()


def test_spread_falls_back_on_every_allowed_node_when_none_is_feasible():
    from o2o.schedulers import Spread

    p = probes([1e9, 2e9, 1e9], [0] * 3, [9.0, 0, 0], overloaded=[False, False, True])
    probs = Spread().probabilities(view(deadline=0.5), p)
    assert probs[0].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    with pytest.raises(ValueError):
        Spread(local_margin=0.0)
    with pytest.raises(ValueError):
        Spread(peer_margin=float("nan"))


def test_spread_margins_act_separately():
    from o2o.schedulers import Spread

    # Own backlog 0.5 s + 1 s = 1.5 s: local with local_margin 0.8 (1.6 s), not with 0.7.
    p = probes([1e9, 4e9, 2e9], [0, 0, 0], [0.5, 0.0, 0.0])
    v = view(deadline=2.0)
    assert Spread(local_margin=0.8, peer_margin=0.7).probabilities(v, p)[0].tolist() == [1.0, 0.0, 0.0]
    # Not local; peer budget 0.8 * 2 = 1.6 s makes node 2 (1.5 s) feasible too: weights 1, 4, 2.
    assert Spread(local_margin=0.7, peer_margin=0.8).probabilities(v, p)[0].tolist() == pytest.approx(
        [1 / 7, 4 / 7, 2 / 7])


# slack-reliable on a hand case: node 0 of 4, 1 s of transmission to every peer (1e6 B at 1e6
# B/s), 1e9 cycles, deadline 4 s. Capacities 1, 2, 1, 4 GHz; alpha 0, 0.2, 0, 0; node 3 is
# overloaded. est: node 1: 1 + 0.5 (backlog) + 0.5 = 2.0 s, rel e^-0.1; node 2: 1 + 0.5 + 1 =
# 2.5 s, rel 1; node 0 itself: its backlog + 1 s.
def _slack_case(own_backlog_s):
    return probes([1e9, 2e9, 1e9, 4e9], [0, 0.2, 0, 0], [own_backlog_s, 0.5, 0.5, 0.0],
                  overloaded=[False, False, False, True])


def test_slack_reliable_keeps_a_task_local_when_its_own_estimate_meets_the_margin():
    from o2o.schedulers import SlackReliable

    rule = SlackReliable(local_margin=0.7, peer_margin=0.9, rel_power=2, slack_power=2)
    v = view(n=4, deadline=4.0, u=(0.99, 0))
    # Own estimate 1.5 + 1 = 2.5 s <= 0.7 * 4 = 2.8 s.
    assert rule.choose(v, _slack_case(1.5)).tolist() == [0]
    assert rule.action_prob(v, np.array([0])).tolist() == [1.0]


def test_slack_reliable_weighs_feasible_peers_by_reliability_and_slack():
    from o2o.schedulers import SlackReliable

    rule = SlackReliable(local_margin=0.7, peer_margin=0.9, rel_power=2, slack_power=2)
    v = view(n=4, deadline=4.0)
    # Itself: 3.5 + 1 = 4.5 s > 3.6 s, infeasible. Node 1: slack (4 - 2) / 4 = 0.5; node 2:
    # (4 - 2.5) / 4 = 0.375. Node 3: overloaded. w = rel^2 * slack^2.
    w1, w2 = np.exp(-0.1) ** 2 * 0.5 ** 2, 1.0 * 0.375 ** 2
    probs = rule.probabilities(v, _slack_case(3.5))[0]
    assert probs.tolist() == pytest.approx([0.0, w1 / (w1 + w2), w2 / (w1 + w2), 0.0])
    # Powers 0: uniform over the feasible nodes.
    flat = SlackReliable(local_margin=0.7, peer_margin=0.9, rel_power=0, slack_power=0)
    assert flat.probabilities(v, _slack_case(3.5))[0].tolist() == pytest.approx([0, 0.5, 0.5, 0])
    # A tighter peer margin (0.55 * 4 = 2.2 s) leaves node 1 alone.
    tight = SlackReliable(local_margin=0.5, peer_margin=0.55, rel_power=2, slack_power=2)
    assert tight.probabilities(v, _slack_case(3.5))[0].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_slack_reliable_action_probabilities_sum_to_one_over_its_choices():
    from o2o.schedulers import SlackReliable

    rule = SlackReliable(local_margin=0.7, peer_margin=0.9, rel_power=2, slack_power=2)
    seen = {}
    for u in np.linspace(0, 0.9999, 500):
        v = view(n=4, deadline=4.0, u=(u, 0))
        a = rule.choose(v, _slack_case(3.5))
        seen[int(a[0])] = float(rule.action_prob(v, a)[0])
    assert sorted(seen) == [1, 2]
    assert sum(seen.values()) == pytest.approx(1.0)


def test_slack_reliable_falls_back_on_the_earliest_allowed_node():
    from o2o.schedulers import SlackReliable

    # Deadline 1 s: nothing is feasible. The overloaded node 3 would be earliest (1.25 s); of
    # the allowed ones node 1 (2.0 s) is.
    rule = SlackReliable()
    v = view(n=4, deadline=1.0)
    assert rule.probabilities(v, _slack_case(3.5))[0].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert rule.choose(v, _slack_case(3.5)).tolist() == [1]
    assert rule.probe_targets(v).all()


def test_slack_reliable_probabilities_are_a_distribution_on_random_views():
    from o2o.schedulers import SlackReliable

    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(2, 8))
        rule = SlackReliable(*rng.uniform(0.05, 1.0, 2), *rng.uniform(0, 5, 2))
        flags = (rng.random(n) < 0.4).tolist()
        p = probes(rng.uniform(1e8, 4e9, n).tolist(), rng.uniform(0, 0.3, n).tolist(),
                   rng.uniform(0, 5, n).tolist(), overloaded=flags)
        node = int(rng.integers(n))
        v = view(node=node, n=n, deadline=float(rng.uniform(0.5, 5)), rate=rng.uniform(1e5, 1e7, n),
                 beta=rng.uniform(0, 0.1, n), send_backlog=rng.uniform(0, 1, n))
        probs = rule.probabilities(v, p)[0]
        assert probs.sum() == pytest.approx(1.0) and (probs >= 0).all()
        others_flagged = [j for j in range(n) if flags[j] and j != node]
        assert probs[others_flagged].sum() == 0.0


def test_rule_parameters_are_checked():
    from o2o.core.errors import UserError
    from o2o.schedulers import SlackReliable, make_rule

    for bad in ({"local_margin": 0.0}, {"peer_margin": 1.5}, {"rel_power": -1}, {"slack_power": float("inf")}):
        with pytest.raises(ValueError):
            SlackReliable(**bad)
        with pytest.raises(UserError):
            make_rule("slack-reliable", bad)
    with pytest.raises(UserError, match="no parameter"):
        make_rule("spread", {"margin": 0.7})
    with pytest.raises(UserError, match="has no parameters"):
        make_rule("ratc", {"local_margin": 0.7})
    assert make_rule("spread", {"local_margin": 0.6, "peer_margin": 0.5}).params() == {
        "local_margin": 0.6, "peer_margin": 0.5}
