"""Hand-checked cases of the system model (paper III-A) on tiny networks, computed on paper."""

import numpy as np
import pytest

from o2o.core.outcomes import DROP, EMPTY, EXEC_FAIL, SUCCESS, TRANS_FAIL
from o2o.sim.engine import Engine
from tests.helpers import hand_episode, hand_network, hand_scenario

GHZ = 1e9
MB = 1e6  # bytes/s of every link in these cases


def run(nodes, slots, tasks, dests, capacity=(GHZ, 2 * GHZ), alpha=None, beta=None, clocks=None):
    """Run one episode where the task of (slot, node) goes to dests[(slot, node)]."""
    sc = hand_scenario(nodes, slots)
    net = hand_network(capacity[:nodes] if len(capacity) >= nodes else [GHZ] * nodes, MB,
                       alpha=alpha, beta=beta)
    ep = hand_episode(slots, nodes, tasks)
    for (kind, t, i), clock in (clocks or {}).items():
        getattr(ep, kind)[0, t, i] = clock
    engine = Engine(sc, net, ep)
    seen = []
    while not engine.done:
        a = np.full((1, nodes), nodes)
        for (t, i), j in dests.items():
            if t == engine.t:
                a[0, i] = j
        state = engine.node_state()
        seen.append((state.exec_len.copy(), state.exec_backlog_s.copy(), state.in_flight.copy(),
                     state.send_backlog_s.copy()))
        engine.step(a)
    return engine, seen


def test_fifo_queueing_at_one_execution_queue():
    # Node 0 (1 GHz) runs a 0.8 s task from t=0 and a 0.5 s task arriving at 0.5, locally.
    e, seen = run(2, 4, {(0, 0): (1, 0.8 * GHZ), (1, 0): (1, 0.5 * GHZ)}, {(0, 0): 0, (1, 0): 0})
    assert e.outcome[0, 0, 0] == SUCCESS and e.outcome[0, 1, 0] == SUCCESS
    assert e.exec_start_s[0, 0, 0] == pytest.approx(0.0) and e.end_s[0, 0, 0] == pytest.approx(0.8)
    assert e.exec_start_s[0, 1, 0] == pytest.approx(0.8) and e.end_s[0, 1, 0] == pytest.approx(1.3)
    # Team reward: +1 in slot 1 (ends at 0.8), +1 in slot 2 (ends at 1.3).
    assert e.reward[0].tolist() == [0, 1, 1, 0]
    # What node 0 states at the boundaries: t=0.5: the first task runs, 0.3 s left;
    # t=1.0: the second runs since 0.8, 0.3 s left; t=1.5: empty.
    assert [s[0][0, 0] for s in seen] == [0, 1, 1, 0]
    assert [s[1][0, 0] for s in seen] == pytest.approx([0.0, 0.3, 0.3, 0.0])


def test_drop_at_head_of_execution_queue_uses_no_cpu():
    tasks = {(0, 0): (1, 1.2 * GHZ), (1, 0): (1, 0.5 * GHZ, 0.9), (2, 0): (1, 0.1 * GHZ)}
    e, seen = run(2, 4, tasks, {(0, 0): 0, (1, 0): 0, (2, 0): 0})
    # Second task reaches the head at 1.2: 1.2 + 0.5 > 0.5 + 0.9 -> dropped at 1.2.
    assert e.outcome[0, 1, 0] == DROP and e.end_s[0, 1, 0] == pytest.approx(1.2)
    # Third task (arrived 1.0) starts at 1.2, the moment the dropped one left.
    assert e.outcome[0, 2, 0] == SUCCESS
    assert e.exec_start_s[0, 2, 0] == pytest.approx(1.2) and e.end_s[0, 2, 0] == pytest.approx(1.3)
    # At t=1.0 node 0 states its running task (0.2 s left) plus the waiting one (0.5 s).
    assert seen[2][0][0, 0] == 2 and seen[2][1][0, 0] == pytest.approx(0.7)
    assert e.reward[0].tolist() == [0, 0, 1, 0]  # +1 (1.2), -1 (drop at 1.2), +1 (1.3): slot 2


def test_drop_at_head_of_send_queue_and_link_fifo():
    # Node 0 -> node 1 (2 GHz) at 1 MB/s: a 1.5 s transfer, then 0.1 s of execution.
    tasks = {(0, 0): (1.5 * MB, 0.2 * GHZ), (1, 0): (0.5 * MB, 0.2 * GHZ, 1.55),
             (2, 0): (0.2 * MB, 0.2 * GHZ)}
    e, seen = run(2, 4, tasks, {(0, 0): 1, (1, 0): 1, (2, 0): 1})
    assert e.outcome[0, 0, 0] == SUCCESS and e.end_s[0, 0, 0] == pytest.approx(1.6)
    # Second reaches the head of the link at 1.5: it could finish sending by its deadline
    # (2.0 <= 2.05) but not executing (1.5 + 0.5 + 0.1 > 0.5 + 1.55): dropped there.
    assert e.outcome[0, 1, 0] == DROP and e.end_s[0, 1, 0] == pytest.approx(1.5)
    assert e.tx_start_s[0, 1, 0] == pytest.approx(1.5)
    # Third (joined at 1.0) goes on the wire at 1.5, the moment the dropped one left: 1.5-1.7,
    # then runs 1.7-1.8 on node 1.
    assert e.tx_start_s[0, 2, 0] == pytest.approx(1.5)
    assert e.exec_start_s[0, 2, 0] == pytest.approx(1.7) and e.end_s[0, 2, 0] == pytest.approx(1.8)
    # At t=1.0 node 1 receives two tasks from node 0 (one on the wire, one queued; the third
    # is decided at that boundary, after the observation) and link 0 -> 1 has 0.5 s left of the
    # first plus the 0.5 s of the queued one.
    assert seen[2][2][0, 1, 0] == 2
    assert seen[2][3][0, 0, 1] == pytest.approx(1.0)
    assert e.reward[0].tolist() == [0, 0, 0, 1]  # +1 (1.6), -1 (1.5), +1 (1.8): all in slot 3


def test_same_instant_arrivals_run_in_source_order():
    # Nodes 1 and 2 send at t=0 (0.5 s transfers) and node 0 gets a local task at t=0.5:
    # all three reach node 0's queue at 0.5 and run in source order 0, 1, 2, 0.2 s each.
    tasks = {(0, 1): (0.5 * MB, 0.2 * GHZ), (0, 2): (0.5 * MB, 0.2 * GHZ), (1, 0): (1, 0.2 * GHZ)}
    e, _ = run(3, 4, tasks, {(0, 1): 0, (0, 2): 0, (1, 0): 0}, capacity=(GHZ, GHZ, GHZ))
    assert e.exec_start_s[0, 1, 0] == pytest.approx(0.5)
    assert e.exec_start_s[0, 0, 1] == pytest.approx(0.7)
    assert e.exec_start_s[0, 0, 2] == pytest.approx(0.9)
    assert e.reward[0].tolist() == [0, 2, 1, 0]


def test_failures_free_the_resource_at_the_failure():
    # Execution fails 0.3 s into a 0.8 s run (clock 0.03 / alpha 0.1); the next task starts then.
    tasks = {(0, 0): (1, 0.8 * GHZ), (0, 1): (1 * MB, 0.2 * GHZ), (1, 0): (1, 0.4 * GHZ)}
    clocks = {("exec_fail_clock", 0, 0): 0.03, ("tx_fail_clock", 0, 1): 0.02}
    e, _ = run(2, 4, tasks, {(0, 0): 0, (0, 1): 0, (1, 0): 0}, alpha=[0.1, 0.0],
               beta=[[0, 0], [0.1, 0]], clocks=clocks)
    assert e.outcome[0, 0, 0] == EXEC_FAIL and e.end_s[0, 0, 0] == pytest.approx(0.3)
    # The transfer 1 -> 0 fails 0.2 s in (clock 0.02 / beta 0.1).
    assert e.outcome[0, 0, 1] == TRANS_FAIL and e.end_s[0, 0, 1] == pytest.approx(0.2)
    assert e.exec_start_s[0, 1, 0] == pytest.approx(0.5)
    assert e.outcome[0, 1, 0] == SUCCESS
    assert (e.outcome[0, 2:] == EMPTY).all()
    assert e.reward[0].tolist() == [-2, 1, 0, 0]


def test_outcomes_after_the_last_slot_are_drained_into_it():
    tasks = {(1, 0): (1, 3.0 * GHZ)}
    e, _ = run(2, 2, tasks, {(1, 0): 0})
    assert e.outcome[0, 1, 0] == SUCCESS and e.end_s[0, 1, 0] == pytest.approx(3.5)
    assert e.reward[0].tolist() == [0, 1]
    assert e.reward_by_decision[0].tolist() == [0, 1]


def test_reward_credit_by_decision_slot():
    e, _ = run(2, 4, {(0, 0): (1, 0.8 * GHZ), (1, 0): (1, 0.5 * GHZ)}, {(0, 0): 0, (1, 0): 0})
    assert e.reward_by_decision[0].tolist() == [1, 1, 0, 0]


def test_utilisation_and_completion_time_by_hand():
    # Node 0 runs 0.8 s and 0.5 s (busy 1.3 s); link 0 -> 1 carries 1 MB in 1 s; episode span
    # max(4 slots * 0.5 s, last end 1.3 s) = 2 s.
    tasks = {(0, 0): (1, 0.8 * GHZ), (1, 0): (1, 0.5 * GHZ), (2, 0): (1 * MB, 0.2 * GHZ)}
    e, _ = run(2, 4, tasks, {(0, 0): 0, (1, 0): 0, (2, 0): 1})
    m = e.metrics()
    # Third task: on the wire 1.0-2.0, runs 2.0-2.1 on node 1: the span is 2.1 s.
    assert m["node_utilisation"][0].tolist() == pytest.approx([1.3 / 2.1, 0.1 / 2.1])
    assert m["link_utilisation"][0, 0, 1] == pytest.approx(1.0 / 2.1)
    assert m["mean_completion_s"][0] == pytest.approx((0.8 + 0.8 + 1.1) / 3)
