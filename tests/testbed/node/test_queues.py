"""The node's queues without sockets: the drop and failure rules at the heads of the execution
queue and the send queues, FIFO order, backlogs, on small hand-checked numbers (all exact in
binary floating point, so the boundary cases are exact too)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from o2o.core.outcomes import DROP, EXEC_FAIL, SUCCESS, TRANS_FAIL
from o2o.sim.engine import settle_stage
from o2o.testbed.node.queues import Ended, ExecQueue, NodeQueues, SendQueue, Stage, Task
from tests.helpers import hand_network


def task(size_bytes=500.0, cycles=250_000.0, arrive=0.0, deadline_s=1.0, tx_clock=math.inf,
         exec_clock=math.inf, slot=0, source=0) -> Task:
    return Task(episode=0, slot=slot, source=source, size_bytes=size_bytes, cycles=cycles,
                deadline_s=deadline_s, due=arrive + deadline_s, tx_fail_clock=tx_clock,
                exec_fail_clock=exec_clock)


# A link of 1000 B/s to a node of 1 MHz: a 500-byte task of 250 000 cycles has T^t = 0.5 s
# and T^c = 0.25 s there; it arrived at 0 with d = 1 s, so a + d = 1.
def send_queue(beta=0.0) -> SendQueue:
    return SendQueue(rate_Bps=1000.0, fail_rate=beta, dest_capacity_hz=1e6)


def exec_queue(alpha=0.0, threshold=2) -> ExecQueue:
    return ExecQueue(capacity_hz=1e6, fail_rate=alpha, overload_threshold=threshold)


# ------------------------------------------------------------------ send queue: drop at the head
def test_send_head_starts_when_now_plus_transfer_plus_execution_meets_the_deadline():
    q = send_queue()
    q.push(task())
    step = q.start_next(0.25, link_up=True)          # 0.25 + 0.5 + 0.25 = 1.0, not > 1.0
    assert isinstance(step, Stage)
    assert (step.start, step.stage_s, step.fail_at, step.ends_at) == (0.25, 0.5, math.inf, 0.75)
    assert q.sending is step.task and step.task.tx_start == 0.25


def test_send_head_is_dropped_when_now_plus_transfer_plus_execution_passes_the_deadline():
    q = send_queue()
    t = task()
    q.push(t)
    step = q.start_next(0.375, link_up=True)         # 0.375 + 0.5 + 0.25 = 1.125 > 1.0
    assert step == Ended(t, DROP, 0.375)
    assert t.tx_start == 0.375 and q.sending is None and len(q) == 0


def test_send_drop_counts_the_execution_still_ahead_at_the_destination():
    # Without the execution (0.25 s) the transfer alone would make it: 0.375 + 0.5 < 1.
    fast_cpu = SendQueue(rate_Bps=1000.0, fail_rate=0.0, dest_capacity_hz=4e6)   # T^c = 0.0625
    fast_cpu.push(task())
    assert isinstance(fast_cpu.start_next(0.375, link_up=True), Stage)           # 0.9375 <= 1
    slow_cpu = send_queue()
    slow_cpu.push(task())
    assert slow_cpu.start_next(0.375, link_up=True).outcome == DROP


def test_without_a_link_the_head_fails_in_transmission_but_a_late_task_is_still_a_drop():
    q = send_queue()
    on_time, late = task(), task(slot=1, arrive=-0.5)    # due 1.0 and 0.5
    q.push(on_time)
    q.push(late)
    assert q.start_next(0.125, link_up=False) == Ended(on_time, TRANS_FAIL, 0.125)
    assert q.start_next(0.125, link_up=False) == Ended(late, DROP, 0.125)


# ------------------------------------------------------------------ execution queue: drop at the head
def test_exec_head_runs_when_now_plus_execution_meets_the_deadline():
    q = exec_queue()
    t = task(cycles=500_000.0)                       # T^c = 0.5
    q.push(t)
    step = q.start_next(0.5)                         # 0.5 + 0.5 = 1.0, not > 1.0
    assert isinstance(step, Stage) and q.running is t
    assert (t.exec_start, t.exec_s, step.ends_at) == (0.5, 0.5, 1.0)
    assert ExecQueue.nominal_outcome(step) == SUCCESS


def test_exec_head_is_dropped_when_now_plus_execution_passes_the_deadline_and_uses_no_cpu():
    q = exec_queue()
    late, next_one = task(cycles=500_000.0), task(cycles=500_000.0, slot=1, arrive=0.5)
    q.push(late)
    q.push(next_one)
    assert q.start_next(0.625) == Ended(late, DROP, 0.625)   # 0.625 + 0.5 = 1.125 > 1.0
    assert q.running is None
    step = q.start_next(0.625)                       # the CPU is free at once: 1.125 <= 1.5
    assert isinstance(step, Stage) and step.task is next_one and step.start == 0.625


# ------------------------------------------------------------------ failure clocks
@pytest.mark.parametrize("clock, fails, ends_at, outcome", [
    (0.8, True, 0.4, EXEC_FAIL),     # alpha = 2: fails 0.4 s in, inside T^c = 0.5
    (1.2, False, 0.5, SUCCESS),      # fails 0.6 s in: after the stage, no effect
    (1.0, False, 0.5, SUCCESS),      # exactly at the end of the stage: the stage made it
])
def test_execution_failure_clock_inside_or_outside_the_stage(clock, fails, ends_at, outcome):
    q = exec_queue(alpha=2.0)
    q.push(task(cycles=500_000.0, exec_clock=clock))
    step = q.start_next(0.0)
    assert step.fail_after_s == clock / 2.0
    assert step.fails is fails and step.ends_at == ends_at
    assert ExecQueue.nominal_outcome(step) == outcome


@pytest.mark.parametrize("clock, fail_at", [(1.0, 0.5), (3.0, math.inf)])
def test_transfer_failure_clock_inside_or_outside_the_stage(clock, fail_at):
    q = send_queue(beta=4.0)                         # fails clock / 4 s after the start
    q.push(task(tx_clock=clock))
    step = q.start_next(0.25, link_up=True)          # T^t = 0.5: the stage is [0.25, 0.75]
    assert step.fail_at == fail_at


def test_no_failures_at_rate_zero():
    q = send_queue(beta=0.0)
    q.push(task(tx_clock=0.0))                       # even a zero clock: rate 0 never fails
    step = q.start_next(0.0, link_up=True)
    assert step.fail_after_s == math.inf and not step.fails


def test_real_compute_stops_at_the_failure_or_the_deadline_whichever_is_first():
    q = exec_queue(alpha=2.0)
    q.push(task(cycles=500_000.0, exec_clock=1.6))   # fails 0.8 s in, due at 1.0
    step = q.start_next(0.0)
    assert ExecQueue.real_stop_at(step) == 0.8
    assert ExecQueue.real_outcome(step, completed=True) == SUCCESS
    assert ExecQueue.real_outcome(step, completed=False) == EXEC_FAIL
    q.finish(step)
    q.push(task(cycles=500_000.0, exec_clock=2.4, slot=1))   # fails 1.2 s in: after the deadline
    step = q.start_next(0.0)
    assert ExecQueue.real_stop_at(step) == 1.0
    assert ExecQueue.real_outcome(step, completed=False) == DROP


# ------------------------------------------------------------------ order and state
def test_send_queue_is_fifo_one_transfer_at_a_time():
    q = send_queue()
    tasks = [task(size_bytes=100.0, slot=k) for k in range(3)]
    for t in tasks:
        q.push(t)
    order = []
    now = 0.0
    for _ in tasks:
        step = q.start_next(now, link_up=True)
        with pytest.raises(RuntimeError):
            q.start_next(now, link_up=True)           # busy until the transfer is over
        order.append(step.task.slot)
        now = step.ends_at
        q.finish(step)
    assert order == [0, 1, 2] and now == pytest.approx(0.3)
    assert q.start_next(now, link_up=True) is None


def test_execution_queue_is_fifo_and_its_state_is_what_probes_report():
    q = exec_queue(threshold=2)
    tasks = [task(cycles=250_000.0, slot=k, deadline_s=4.0) for k in range(4)]   # T^c = 0.25 each
    for t in tasks:
        q.push(t)
    assert (q.waiting_len, q.length, q.overloaded) == (4, 4, True)     # 4 waiting > 2
    step = q.start_next(0.0)
    assert step.task is tasks[0]
    assert (q.waiting_len, q.length, q.overloaded) == (3, 4, True)     # the running one does not count
    # Backlog at 0.125: half of the running task (0.125) plus three waiting ones (0.75).
    assert q.backlog_s(0.125) == 0.875
    q.finish(step)
    assert q.start_next(0.25).task is tasks[1]
    assert (q.waiting_len, q.overloaded) == (2, False)


def test_send_backlog_counts_the_transfer_under_way_and_the_waiting_ones():
    q = send_queue()
    q.push(task(size_bytes=500.0))
    q.push(task(size_bytes=250.0, slot=1))
    assert q.backlog_s(0.0) == 0.75
    q.start_next(0.0, link_up=True)
    assert q.backlog_s(0.125) == 0.625               # 0.375 left of the first, 0.25 waiting
    assert q.backlog_s(2.0) == 0.25                  # past the nominal end: only the waiting one


def test_a_lost_link_fails_every_waiting_task_in_transmission():
    q = send_queue()
    first, second = task(), task(slot=1)
    q.push(first)
    q.push(second)
    step = q.start_next(0.0, link_up=True)           # `first` is on the wire; its sender reports it
    assert q.fail_waiting(0.5) == [Ended(second, TRANS_FAIL, 0.5)]
    assert second.tx_start == 0.5 and len(q) == 0
    q.finish(step)
    assert q.sending is None


def test_node_queues_follow_the_network():
    net = hand_network([1e6, 2e6, 4e6], rate_Bps=[[0, 1000, 2000], [1000, 0, 1000], [2000, 1000, 0]],
                       alpha=[0.5, 1.0, 2.0], beta=np.full((3, 3), 0.25))
    qs = NodeQueues(net, 0)
    assert sorted(qs.send) == [1, 2]
    assert (qs.exec.capacity_hz, qs.exec.fail_rate) == (1e6, 0.5)
    assert (qs.send[2].rate_Bps, qs.send[2].dest_capacity_hz, qs.send[2].fail_rate) == (2000.0, 4e6, 0.25)
    qs.send[2].push(task(size_bytes=1000.0))
    assert qs.send_backlog_s(0.0).tolist() == [0.0, 0.0, 0.5]


# ------------------------------------------------------------------ the simulator's rule, case by case
def test_queue_heads_settle_a_task_as_the_simulators_engine_does():
    """For random stages (with ties on the boundaries), a task reaching the head of an idle queue
    gets the engine's outcome and end time."""
    rng = np.random.default_rng(7)
    for _ in range(500):
        size, cycles = rng.choice([125.0, 250.0, 500.0, 1000.0]), rng.choice([125e3, 250e3, 500e3])
        now, deadline = rng.choice([0.0, 0.25, 0.5, 0.75]), rng.choice([0.5, 0.75, 1.0, 1.5])
        clock, rate = rng.choice([0.25, 0.5, 1.0, 2.0, math.inf]), rng.choice([0.0, 0.5, 1.0, 4.0])
        t = task(size_bytes=size, cycles=cycles, deadline_s=deadline, tx_clock=clock, exec_clock=clock)
        # A send queue: T^t = s / 1000, the execution T^c = c / 1e6 still ahead.
        sq = SendQueue(1000.0, rate, 1e6)
        sq.push(t)
        got = sq.start_next(now, link_up=True)
        fail_after = clock / rate if rate > 0 else math.inf
        _, end, dropped, failed = settle_stage(now, 0.0, size / 1000.0, cycles / 1e6, deadline, fail_after)
        assert isinstance(got, Ended) == bool(dropped)
        if not dropped:
            assert got.fails == bool(failed) and got.ends_at == end
        # An execution queue: T^c = c / 1e6, nothing after it.
        eq = ExecQueue(1e6, rate, 2)
        u = task(size_bytes=size, cycles=cycles, deadline_s=deadline, tx_clock=clock, exec_clock=clock)
        eq.push(u)
        got = eq.start_next(now)
        _, end, dropped, failed = settle_stage(now, 0.0, cycles / 1e6, 0.0, deadline, fail_after)
        assert isinstance(got, Ended) == bool(dropped)
        if not dropped:
            assert ExecQueue.nominal_outcome(got) == (EXEC_FAIL if failed else SUCCESS)
            assert got.ends_at == end
