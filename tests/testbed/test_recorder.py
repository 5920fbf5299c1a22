"""The controller's task table: how reports and node deaths become the episode's log."""

from __future__ import annotations

import numpy as np
import pytest

from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.outcomes import DROP, EMPTY, EXEC_FAIL, SUCCESS, TRANS_FAIL
from o2o.core.scenario import load_scenario
from o2o.testbed import wire
from o2o.testbed.recorder import EpisodeRecorder

EPOCH = 1000.0


@pytest.fixture
def setup():
    sc = load_scenario("paper-testbed", ["nodes=3", "slots=4", "arrival_prob=1.0"])
    net = sample_network(sc, 0)
    ep = sample_episodes(sc, net, [7])
    return sc, net, EpisodeRecorder(sc, net, ep, index=2, epoch=EPOCH)


def decide(rec, t, i, dest, prob=0.5):
    n = rec.N
    rec.on_decision(i, wire.Decision(episode=2, slot=t, node=i, has_task=True, action=dest, action_prob=prob,
                                  exec_len=1, recv_len=[0] * n, peer_overloaded=[False] * n,
                                  received_at=EPOCH + t * 0.1, decided_at=EPOCH + t * 0.1 + 0.002))


def end(rec, reporter, t, i, dest, outcome, at, **times):
    rec.on_event(reporter, wire.TaskEvent(episode=2, slot=t, source=i, dest=dest, kind="end",
                                       outcome=outcome, end_at=at, **times))


def test_every_stage_of_a_dead_node_ends_as_the_table_says(setup):
    sc, net, rec = setup
    assert rec.pending == 12                          # arrival_prob 1: every node-slot has a task
    decide(rec, 0, 0, 1)                              # (0,0): 0 -> 1, on the wire towards 1
    decide(rec, 0, 1, 1)                              # (0,1): local at 1, in 1's execution queue
    decide(rec, 0, 2, 0)                              # (0,2): 2 -> 0, reaches 0 and runs there
    rec.on_event(0, wire.TaskEvent(episode=2, slot=0, source=2, dest=0, kind="arrived",
                                tx_start=EPOCH + 0.01, tx_end=EPOCH + 0.05, exec_arrive=EPOCH + 0.05))
    decide(rec, 1, 1, 2)                              # (1,1): 1 -> 2: in 1's send queue
    # (1,0) and (1,2) never decided: (1,2) was handed to node 2, (1,0) to node 0.
    settled = rec.node_died(1, EPOCH + 0.15, "connection closed")
    assert settled == 3
    assert rec.outcome[0, 0] == TRANS_FAIL            # towards the dead node
    assert rec.outcome[0, 1] == EXEC_FAIL             # in the dead node's execution queue
    assert rec.outcome[1, 1] == TRANS_FAIL            # in the dead node's send queue
    assert rec.outcome[0, 2] not in (TRANS_FAIL, EXEC_FAIL, DROP, SUCCESS)   # still running at 0
    assert rec.deaths == [{"node": 1, "at_s": pytest.approx(0.15), "slot": 1, "detected_by": "connection closed"}]
    # The first outcome wins: a late report from the live sender changes nothing.
    end(rec, 0, 0, 0, 1, "SUCCESS", EPOCH + 0.3)
    assert rec.outcome[0, 0] == TRANS_FAIL


def test_absent_node_tasks_fail_where_they_arrive_and_logs_validate(setup):
    sc, net, rec = setup
    for t in range(sc.slots):
        rec.node_absent(t, 1, EPOCH + t * sc.slot_s)
        for i in (0, 2):
            decide(rec, t, i, i)
            end(rec, i, t, i, i, "SUCCESS", EPOCH + t * sc.slot_s + 0.05,
                exec_start=EPOCH + t * sc.slot_s + 0.003)
    assert rec.complete.is_set()
    log = rec.to_log()                                # validates (every task has an outcome)
    assert (log.outcome[:, 1] == EXEC_FAIL).all() and (log.dest[:, 1] == 1).all()
    assert (log.outcome[:, [0, 2]] == SUCCESS).all()
    assert np.allclose(log.end_s[:, 0], np.arange(sc.slots) * sc.slot_s + 0.05)
    assert np.all(log.tx_s[:, [0, 2]] == 0) and np.all(log.tx_wait_s[:, [0, 2]] == 0)
    assert np.allclose(log.action_prob[:, 0], 0.5)
    m = rec.metrics()
    assert (m["tasks"], m["success"], m["exec_fail"]) == (12, 8, 4)
    assert m["success_rate"] == pytest.approx(8 / 12)


def test_give_up_settles_the_rest_by_stage(setup):
    sc, net, rec = setup
    decide(rec, 0, 0, 2)
    assert rec.give_up(EPOCH + 5) == 12
    assert rec.outcome[0, 0] == TRANS_FAIL and rec.outcome[0, 1] == EXEC_FAIL
    assert rec.gave_up == 12 and rec.to_log().tasks == 12


def test_reports_that_cannot_be_true_are_refused(setup):
    sc, net, rec = setup
    n = rec.N
    with pytest.raises(wire.UnexpectedMessage):       # someone else's decision
        rec.on_decision(0, wire.Decision(episode=2, slot=0, node=1, has_task=True, action=0, exec_len=0,
                                      recv_len=[0] * n, peer_overloaded=[False] * n,
                                      received_at=0, decided_at=0))
    with pytest.raises(wire.UnexpectedMessage):       # wrong vector length
        rec.on_decision(0, wire.Decision(episode=2, slot=0, node=0, has_task=True, action=0, exec_len=0,
                                      recv_len=[0], peer_overloaded=[False] * n, received_at=0, decided_at=0))
    with pytest.raises(wire.UnexpectedMessage):       # a destination that is not a node
        decide(rec, 0, 0, n)
    decide(rec, 0, 0, 1)
    with pytest.raises(wire.UnexpectedMessage):       # an event from a node that never held the task
        end(rec, 2, 0, 0, 1, "SUCCESS", EPOCH + 1)
    with pytest.raises(wire.UnexpectedMessage):       # another destination than decided
        end(rec, 0, 0, 0, 2, "DROP", EPOCH + 1)
    assert rec.outcome[0, 0] not in (EMPTY, SUCCESS, DROP)
