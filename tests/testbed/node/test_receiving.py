"""The node's receiving queues without sockets: how the data-link messages of a peer move
l^r_ij, and what cannot be true is refused."""

from __future__ import annotations

import pytest

from o2o.testbed import wire
from o2o.testbed.node.receiving import ReceivingQueues

EP = 3


def ref(slot=0, source=1, episode=EP):
    return dict(episode=episode, slot=slot, source=source)


def begin(slot=0, source=1, size=10):
    return wire.PayloadBegin(**ref(slot, source), size_bytes=size, task_size_bytes=float(size),
                             cycles=1e6, deadline_s=1.0, due=5.0, exec_fail_clock=1.0, tx_start=4.0)


def test_a_payload_counts_in_the_receiving_queue_from_its_announcement_until_it_arrives():
    rq = ReceivingQueues(3)
    assert rq.receive(1, wire.Announce(**ref()), b"", EP) is None
    rq.receive(1, wire.Announce(**ref()), b"", EP)              # repeated: counted once
    rq.receive(1, wire.Announce(**ref(slot=1)), b"", EP)
    assert rq.recv_len.tolist() == [0, 2, 0]
    rq.receive(1, begin(), b"", EP)
    rq.receive(1, wire.Chunk(**ref()), b"x" * 6, EP)
    assert rq.receive(1, wire.Chunk(**ref()), b"x" * 4, EP) is None
    arrived = rq.receive(1, wire.PayloadEnd(**ref()), b"", EP)
    assert arrived == begin()
    assert rq.recv_len.tolist() == [0, 1, 0] and not rq.incoming


@pytest.mark.parametrize("leaving", [wire.PayloadAbort, wire.Cancel])
def test_an_aborted_or_cancelled_task_leaves_without_arriving(leaving):
    rq = ReceivingQueues(3)
    rq.receive(2, wire.Announce(**ref(source=2)), b"", EP)
    rq.receive(2, begin(source=2), b"", EP)
    assert rq.receive(2, leaving(**ref(source=2)), b"", EP) is None
    assert rq.recv_len.tolist() == [0, 0, 0] and not rq.incoming


def test_what_cannot_be_true_is_refused_and_other_episodes_are_ignored():
    rq = ReceivingQueues(3)
    with pytest.raises(wire.UnexpectedMessage, match="task of node 2"):
        rq.receive(1, wire.Announce(**ref(source=2)), b"", EP)
    with pytest.raises(wire.UnexpectedMessage, match="on a data link"):
        rq.receive(1, wire.EpisodeEnd(episode=EP), b"", EP)
    with pytest.raises(wire.UnexpectedMessage, match="without payload_begin"):
        rq.receive(1, wire.Chunk(**ref()), b"x", EP)
    with pytest.raises(wire.MalformedMessage, match="unexpected bytes"):
        rq.receive(1, wire.Announce(**ref()), b"x", EP)
    assert rq.receive(1, wire.Announce(**ref(episode=EP - 1)), b"", EP) is None   # a straggler
    assert rq.recv_len.tolist() == [0, 0, 0]
    # More bytes than announced, or fewer at the end: the payload is refused and leaves.
    rq.receive(1, wire.Announce(**ref()), b"", EP)
    rq.receive(1, begin(size=4), b"", EP)
    with pytest.raises(wire.MalformedMessage, match="more payload"):
        rq.receive(1, wire.Chunk(**ref()), b"x" * 5, EP)
    assert rq.recv_len.tolist() == [0, 0, 0] and not rq.incoming
    rq.receive(1, begin(slot=1, size=4), b"", EP)
    rq.receive(1, wire.Chunk(**ref(slot=1)), b"x" * 3, EP)
    with pytest.raises(wire.MalformedMessage, match="3 of 4 bytes"):
        rq.receive(1, wire.PayloadEnd(**ref(slot=1)), b"", EP)


def test_a_lost_data_link_forgets_what_was_coming_from_that_peer():
    rq = ReceivingQueues(3)
    for j in (1, 2):
        rq.receive(j, wire.Announce(**ref(source=j)), b"", EP)
        rq.receive(j, begin(source=j), b"", EP)
    rq.forget(1)
    assert rq.recv_len.tolist() == [0, 0, 1]
    assert [k[2] for k in rq.incoming] == [2]
    ReceivingQueues(0).forget(5)                     # before the configuration: nothing to forget


def test_an_announcement_that_comes_after_its_payload_is_ignored():
    """With kernel-shaped links the payload has a connection of its own, so a task's announcement
    (on the data link) can come after its payload: the receiving queue must not keep it."""
    rq = ReceivingQueues(3)
    rq.receive(1, begin(), b"", EP)
    rq.receive(1, wire.Chunk(**ref()), b"x" * 10, EP)
    assert rq.receive(1, wire.PayloadEnd(**ref()), b"", EP) == begin()
    rq.receive(1, wire.Announce(**ref()), b"", EP)
    rq.receive(2, wire.Cancel(**ref(slot=4, source=2)), b"", EP)
    rq.receive(2, wire.Announce(**ref(slot=4, source=2)), b"", EP)
    assert rq.recv_len.tolist() == [0, 0, 0]
    rq.receive(1, wire.Announce(**ref(slot=1)), b"", EP)           # a new task still counts
    assert rq.recv_len.tolist() == [0, 1, 0]
