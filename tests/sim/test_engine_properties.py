"""Invariants of the simulator over many random scenarios (property-based)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.outcomes import DROP, EMPTY, EXEC_FAIL, SUCCESS, TRANS_FAIL
from o2o.core.scenario import Scenario
from o2o.sim import SCHEDULERS, make_scheduler
from o2o.sim.rollout import rollout

FINAL = [SUCCESS, DROP, EXEC_FAIL, TRANS_FAIL]


@st.composite
def scenarios(draw):
    lo_d = draw(st.floats(0.2, 3.0))
    return Scenario(
        nodes=draw(st.integers(2, 5)), slots=draw(st.integers(1, 12)),
        slot_s=draw(st.sampled_from([0.1, 0.25, 0.5, 1.0])),
        arrival_prob=(0.0, draw(st.floats(0.1, 1.0))),
        task_size_kb=(100, draw(st.floats(200, 8000))),
        complexity=(100, draw(st.floats(200, 3000))),
        deadline_s=(lo_d, lo_d + draw(st.floats(0, 2.0))),
        cores=(draw(st.sampled_from([1, 2, 4])), 8),
        link_rate_mbps=(1, draw(st.floats(2, 40))),
        node_fail_rate=(0, draw(st.sampled_from([0.0, 0.1, 2.0]))),
        link_fail_rate=(0, draw(st.sampled_from([0.0, 0.03, 2.0]))),
    )


def check_fifo(starts, ends, ready, src, eps=1e-9):
    """One resource: busy intervals never overlap and follow (ready time, source) order."""
    order = np.lexsort((src, ready))
    s, e = starts[order], ends[order]
    assert np.all(np.diff(s) >= -eps), "FIFO order violated"
    assert np.all(s[1:] >= e[:-1] - eps), "a resource ran two tasks at once"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), sched=st.sampled_from(SCHEDULERS), net_seed=st.integers(0, 10**6),
       ep_seed=st.integers(0, 10**6))
def test_every_task_ends_exactly_once_and_resources_are_fifo(sc, sched, net_seed, ep_seed):
    net = sample_network(sc, net_seed)
    ep = sample_episodes(sc, net, [ep_seed, ep_seed + 1])
    # The k-probe rule probes 1 to N - 1 peers: at most its default 2, at most N - 1.
    params = {"probes": min(2, sc.nodes - 1)} if sched == "slack-reliable-k" else None
    e = rollout(sc, net, ep, make_scheduler(sched, params)).engine
    has = ep.has_task
    assert np.all(e.outcome[~has] == EMPTY)
    assert np.all(np.isin(e.outcome[has], FINAL))
    m = e.metrics()
    assert np.array_equal(m["success"] + m["drop"] + m["exec_fail"] + m["trans_fail"], m["tasks"])
    # Every outcome is one reward of +-1, under both credits.
    total = 2 * m["success"] - m["tasks"]
    assert np.allclose(e.reward.sum(axis=1), total)
    assert np.allclose(e.reward_by_decision.sum(axis=1), total)
    # Successes met their deadline and ran their full execution time.
    ok = e.outcome == SUCCESS
    assert np.all(e.end_s[ok] <= e.due_s[ok] + 1e-9)
    assert np.allclose(e.end_s[ok], e.exec_start_s[ok] + e.exec_s[ok])
    local = has & (e.dest == np.arange(sc.nodes)[None, None, :])
    assert not np.any(e.outcome[local] == TRANS_FAIL)
    ran = has & ~np.isnan(e.exec_start_s)
    assert np.all(e.exec_start_s[ran] >= e.exec_arrive_s[ran] - 1e-9)
    src = np.broadcast_to(np.arange(sc.nodes), has.shape)
    for b in range(ep.batch):
        for j in range(sc.nodes):
            # The CPU of node j: tasks that reached its queue and were not dropped at its head.
            sel = ran[b] & (e.dest[b] == j) & ~((e.outcome[b] == DROP) & (e.end_s[b] == e.exec_start_s[b]))
            check_fifo(e.exec_start_s[b][sel], e.end_s[b][sel], e.exec_arrive_s[b][sel], src[b][sel])
            for i in range(sc.nodes):
                if i == j:
                    continue
                link = has[b] & (e.dest[b] == j) & (src[b] == i)
                ends = np.where(np.isnan(e.exec_arrive_s[b]), e.end_s[b], e.exec_arrive_s[b])
                arrive = np.broadcast_to(np.arange(sc.slots)[:, None] * sc.slot_s, has.shape[1:])
                check_fifo(e.tx_start_s[b][link], ends[link], arrive[link], src[b][link])
