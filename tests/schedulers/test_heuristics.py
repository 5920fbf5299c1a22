"""The decentralized rules of SPEC section 3 on hand-made views."""

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
