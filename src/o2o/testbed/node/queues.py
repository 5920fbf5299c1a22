"""The queues of one edge node as plain state: no sockets, no clock, no asyncio.

Each edge node keeps an execution queue and N-1 send queues (paper III-A, Fig. 1), all FIFO
with one task at a time at the head: the execution queue at the node's full capacity F_j, a
send queue at the link's rate r_ij. At the head of a queue the shared rules of
``o2o.core.outcomes`` decide what happens to a task, exactly as in the simulator's engine:

* it is **dropped** when it can no longer meet its deadline a + d (eq. 8): at a send queue when
  ``now + T^t_ij + T^c_ij > a + d``, at the execution queue when ``now + T^c_ij > a + d``
  (T^t = s / r_ij and T^c = c / F_j, eqs. 1-2); a dropped task uses no more resources;
* otherwise it holds the resource for its stage, and **fails** inside it when its failure clock
  runs out first: the episode's Exp(1) clock of the task over beta_ij for a transfer, over
  alpha_j for an execution (the Poisson failures of eqs. 3-5), the same clocks as the simulator.

The asyncio node (``edge``) asks these objects what to do with the current time and does the
waiting and the sending itself, so every rule here can be checked with plain numbers (the
sans-I/O design of python-websockets). Times are seconds on the controller clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from o2o.core.network import Network
from o2o.core.outcomes import (
    DROP,
    EXEC_FAIL,
    SUCCESS,
    TRANS_FAIL,
    fails_during,
    misses_deadline,
)


@dataclass
class Task:
    """One task as a node holds it."""

    episode: int
    slot: int
    source: int
    size_bytes: float            # s
    cycles: float                # c
    deadline_s: float            # d
    due: float                   # a + d
    tx_fail_clock: float         # Exp(1) draws of the episode for this task
    exec_fail_clock: float
    dest: int = -1
    tx_start: float | None = None
    tx_end: float | None = None
    exec_arrive: float | None = None
    exec_start: float | None = None
    exec_s: float = 0.0          # nominal T^c = c / F_j at the executing node

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.episode, self.slot, self.source)


@dataclass(frozen=True)
class Ended:
    """The task's outcome (an ``o2o.core.outcomes`` code) is known at ``at``: report it."""

    task: Task
    outcome: int
    at: float


@dataclass(frozen=True)
class Stage:
    """The task at the head holds the resource from ``start`` for its nominal ``stage_s`` (T^t
    or T^c), unless its failure clock runs out ``fail_after_s`` after the start, inside it."""

    task: Task
    start: float
    stage_s: float
    fail_after_s: float

    @property
    def fails(self) -> bool:
        return bool(fails_during(self.fail_after_s, self.stage_s))

    @property
    def fail_at(self) -> float:
        """When the stage fails; infinity when it does not."""
        return self.start + self.fail_after_s if self.fails else math.inf

    @property
    def ends_at(self) -> float:
        return self.start + (self.fail_after_s if self.fails else self.stage_s)


def failure_after_s(clock: float, rate: float) -> float:
    """Time to the first failure of a stage: an Exp(1) clock over the failure rate (the Poisson
    process of eqs. 3-5); never at rate 0."""
    return clock / rate if rate > 0 else math.inf


class ExecQueue:
    """Node j's execution queue: FIFO, one task at a time at the full capacity F_j."""

    def __init__(self, capacity_hz: float, fail_rate: float, overload_threshold: float):
        self.capacity_hz = float(capacity_hz)
        self.fail_rate = float(fail_rate)              # alpha_j
        self.overload_threshold = overload_threshold
        self.waiting: deque[Task] = deque()
        self.running: Task | None = None

    @property
    def waiting_len(self) -> int:
        return len(self.waiting)

    @property
    def length(self) -> int:
        """l_j of the observation (paper IV-B): waiting tasks plus the running one."""
        return len(self.waiting) + (self.running is not None)

    @property
    def overloaded(self) -> bool:
        """The 1-bit flag of the action mask (paper IV-B): more tasks wait than the threshold."""
        return bool(self.waiting_len > self.overload_threshold)

    def backlog_s(self, now: float) -> float:
        """Nominal remaining work: the running task's rest plus every waiting task's c / F_j."""
        backlog = sum(t.cycles for t in self.waiting) / self.capacity_hz
        if self.running is not None:
            backlog += max(self.running.exec_start + self.running.exec_s - now, 0.0)
        return backlog

    def push(self, task: Task) -> None:
        self.waiting.append(task)

    def start_next(self, now: float) -> Ended | Stage | None:
        """Take the head: dropped now if ``now + T^c > a + d``, else it runs (``running``) until
        ``finish``. None when nothing waits."""
        if self.running is not None:
            raise RuntimeError("the execution queue runs one task at a time: finish the running one first")
        if not self.waiting:
            return None
        task = self.waiting.popleft()
        task.exec_s = task.cycles / self.capacity_hz
        task.exec_start = now
        if misses_deadline(now, task.exec_s, 0.0, task.due):
            return Ended(task, DROP, now)
        self.running = task
        return Stage(task, now, task.exec_s, failure_after_s(task.exec_fail_clock, self.fail_rate))

    @staticmethod
    def nominal_outcome(stage: Stage) -> int:
        """An emulated execution lasts exactly T^c: it fails if its failure clock runs out first."""
        return EXEC_FAIL if stage.fails else SUCCESS

    @staticmethod
    def real_stop_at(stage: Stage) -> float:
        """Real work may take longer than T^c: it is stopped at its failure time or its
        deadline, whichever comes first."""
        return min(stage.start + stage.fail_after_s, stage.task.due)

    @staticmethod
    def real_outcome(stage: Stage, completed: bool) -> int:
        """Real work that was stopped before it completed failed if the failure clock stopped it,
        and was dropped if the deadline did."""
        if completed:
            return SUCCESS
        return EXEC_FAIL if stage.start + stage.fail_after_s <= stage.task.due else DROP

    def finish(self, stage: Stage) -> None:
        """The running task's execution is over (ended, or abandoned with the episode)."""
        if self.running is stage.task:
            self.running = None


class SendQueue:
    """Node i's send queue towards node j: FIFO, one transfer at a time at rate r_ij."""

    def __init__(self, rate_Bps: float, fail_rate: float, dest_capacity_hz: float):
        self.rate_Bps = float(rate_Bps)                # r_ij
        self.fail_rate = float(fail_rate)              # beta_ij
        self.dest_capacity_hz = float(dest_capacity_hz)  # F_j, for the execution still ahead
        self.waiting: deque[Task] = deque()
        self.sending: Task | None = None

    def __len__(self) -> int:
        return len(self.waiting)

    def backlog_s(self, now: float) -> float:
        """Remaining nominal transmission work: the transfer under way plus every waiting s / r_ij."""
        total = sum(t.size_bytes for t in self.waiting) / self.rate_Bps
        current = self.sending
        if current is not None and current.tx_start is not None:
            total += max(current.tx_start + current.size_bytes / self.rate_Bps - now, 0.0)
        return total

    def push(self, task: Task) -> None:
        self.waiting.append(task)

    def start_next(self, now: float, link_up: bool) -> Ended | Stage | None:
        """Take the head: dropped now if ``now + T^t + T^c > a + d``; failed in transmission now
        if there is no link to j; else its transfer starts (``sending``) until ``finish``. None
        when nothing waits."""
        if self.sending is not None:
            raise RuntimeError("a send queue sends one task at a time: finish the transfer first")
        if not self.waiting:
            return None
        task = self.waiting.popleft()
        task.tx_start = now
        tx_s = task.size_bytes / self.rate_Bps
        if misses_deadline(now, tx_s, task.cycles / self.dest_capacity_hz, task.due):
            return Ended(task, DROP, now)
        if not link_up:
            return Ended(task, TRANS_FAIL, now)
        self.sending = task
        return Stage(task, now, tx_s, failure_after_s(task.tx_fail_clock, self.fail_rate))

    def finish(self, stage: Stage) -> None:
        """The transfer is over (arrived, failed, or cut)."""
        if self.sending is stage.task:
            self.sending = None

    def fail_waiting(self, now: float) -> list[Ended]:
        """The link to j broke or j left: every task still waiting fails in transmission now."""
        ended = []
        while self.waiting:
            task = self.waiting.popleft()
            task.tx_start = task.tx_start if task.tx_start is not None else now
            ended.append(Ended(task, TRANS_FAIL, now))
        return ended


class NodeQueues:
    """The execution queue and the N-1 send queues of node ``me`` for one episode."""

    def __init__(self, network: Network, me: int):
        self.n, self.me = network.n, me
        self.exec = ExecQueue(network.capacity_hz[me], network.node_fail_rate[me],
                              network.overload_threshold[me])
        self.send = {j: SendQueue(network.link_rate_Bps[me, j], network.link_fail_rate[me, j],
                                  network.capacity_hz[j])
                     for j in range(network.n) if j != me}

    def send_backlog_s(self, now: float) -> np.ndarray:
        """(N,) remaining nominal transmission work towards each node (0 towards itself)."""
        out = np.zeros(self.n)
        for j, queue in self.send.items():
            out[j] = queue.backlog_s(now)
        return out
