"""The batched slotted simulator of the paper's system model (III-A).

B independent episodes run in lockstep (batch first). Time is continuous inside slots. The
engine is exact, without a per-event loop, because every queue is FIFO and every task's service
time and failure clock are known when it joins a queue:

* a task that joins send queue i -> j at time a starts at ``max(a, link_free[i, j])``, so its
  drop, failure or arrival at j is settled when the decision is applied;
* arrivals at an execution queue are settled window by window: after the decisions of slot t,
  every arrival in [t, t+1) slots is known (later decisions arrive later), so they are put in
  (time, source) order and run through the node's FIFO at full capacity.

What a node can see at a slot boundary (queue lengths, receiving queues, backlogs in seconds) is
kept as running sums of +/- events on a ring of future boundaries, so reading it costs O(B N^2)
and never touches individual tasks. Backlogs are *nominal*, as a real node would state them:
remaining work of the running task plus the full work of the waiting ones, with no knowledge of
future failures.

The state lives in this class's arrays; one slot is settled by compiled loops over them
(``o2o.sim.kernel``, numba), task by task, so one episode costs as little per slot as a batch
of many (the batched array code it replaced ran ~300 array operations per slot whatever B).
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from o2o.core.episodes import Episodes
from o2o.core.metrics import episode_metrics
from o2o.core.network import Network
from o2o.core.outcomes import (
    EMPTY,
    PENDING,
    fails_during,
    misses_deadline,
)
from o2o.core.scenario import Scenario


class NodeState:
    """What every node could observe at the current slot boundary, (B, N) unless noted.
    The backlogs in seconds are computed on first use."""

    def __init__(self, engine: "Engine"):
        self._engine = engine
        self.now_s = engine.now_s
        self.exec_len = engine.exec_len        # tasks in the execution queue, running one included
        self.exec_wait = engine.exec_wait      # tasks waiting in the execution queue
        self.in_flight = engine.in_flight      # (B, N, N) [j, i]: tasks queued or on the wire i -> j

    @cached_property
    def overloaded(self) -> np.ndarray:
        """The 1-bit probe answer: more tasks wait than the node's overload threshold."""
        return self.exec_wait > self._engine.net.overload_threshold[None, :]

    @cached_property
    def exec_backlog_s(self) -> np.ndarray:
        """Remaining nominal work in the execution queue, seconds."""
        e = self._engine
        return np.maximum(e.backlog_c - e.backlog_k * self.now_s, 0.0)

    @cached_property
    def send_backlog_s(self) -> np.ndarray:
        """(B, N, N) [i, j]: remaining nominal transmission work on link i -> j, seconds."""
        e = self._engine
        return np.maximum(e.send_c - e.send_k * self.now_s, 0.0)


def settle_stage(ready_s, free_s, stage_s, also_s, due_s, fail_after_s):
    """One FIFO stage (a send queue or an execution queue) for tasks reaching its head.

    A task ready at ``ready_s`` starts when the resource is free (``free_s``); it is dropped
    there if ``start + stage + also > due`` (``also``: the execution still ahead of a
    transmission, 0 for execution) (the drop rule), fails after ``fail_after_s`` if that falls
    inside the stage (paper eqs. 3-5), and otherwise ends after the stage. A dropped task uses no
    resource time. Returns (start, end, dropped, failed); ``end`` is when the resource is free.
    """
    start = np.maximum(ready_s, free_s)
    dropped = misses_deadline(start, stage_s, also_s, due_s)
    failed = ~dropped & fails_during(fail_after_s, stage_s)
    end = np.where(dropped, start, start + np.where(failed, fail_after_s, stage_s))
    return start, end, dropped, failed


class Engine:
    """Runs a batch of episodes of one scenario on one network."""

    def __init__(self, scenario: Scenario, network: Network, episodes: Episodes):
        self.sc = scenario
        self.net = network
        self.ep = episodes
        self.B, self.T, self.N = episodes.has_task.shape
        self.slot_s = scenario.slot_s
        # Every event of a task happens within this many slots of its arrival (deadline bound).
        self.horizon = int(math.ceil(scenario.max_deadline_s / scenario.slot_s)) + 1
        self.ring = self.horizon + 3
        # 1 / alpha_j and 1 / beta_ij: an Exp(1) failure clock times these is the failure time.
        self.inv_alpha = np.where(network.node_fail_rate > 0, 1.0 / np.maximum(network.node_fail_rate, 1e-300), np.inf)
        self.inv_beta = np.where(network.link_fail_rate > 0, 1.0 / np.maximum(network.link_fail_rate, 1e-300), np.inf)
        self._constants = tuple(np.ascontiguousarray(a) for a in (
            episodes.has_task, episodes.size_bytes, episodes.cycles, episodes.tx_fail_clock,
            episodes.exec_fail_clock, network.capacity_hz, network.link_rate_Bps, self.inv_alpha,
            self.inv_beta))
        # The compiled loops (numba) load on first use: importing this module stays cheap.
        from o2o.sim.kernel import check_actions, step_slot

        self._check_actions, self._step_slot = check_actions, step_slot
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        B, T, N, R = self.B, self.T, self.N, self.ring
        self.t = 0  # current slot boundary
        self.link_free = np.zeros((B, N, N))
        self.cpu_free = np.zeros((B, N))
        # Per-task records, (B, T, N).
        shape = (B, T, N)
        self.dest = np.full(shape, -1, dtype=np.int64)
        self.outcome = np.where(self.ep.has_task, PENDING, EMPTY).astype(np.int8)
        self.end_s = np.full(shape, np.nan)
        self.tx_start_s = np.full(shape, np.nan)
        self.tx_s = np.zeros(shape)       # nominal transmission time s / r_ij (0 for local)
        self.exec_arrive_s = np.full(shape, np.nan)  # arrival at the destination's exec queue
        # The same, but inf once the arrival has been run through the execution queue: what is
        # still on its way to a queue (read by the centralized reference).
        self.pending_arrival_s = np.full(shape, np.inf)
        self.exec_start_s = np.full(shape, np.nan)
        self.exec_s = np.full(shape, np.nan)  # nominal execution time c / F_j
        self.arrive_s = np.arange(T)[None, :, None] * self.slot_s + np.zeros(shape)
        self.due_s = self.arrive_s + self.ep.deadline_s
        # Observable sums, and their +/- events on a ring of future boundaries (R, ...): the
        # counts exec_len and exec_wait, the backlog terms backlog_c and backlog_k (the backlog
        # at time x is backlog_c - backlog_k x), per node; in_flight, send_c, send_k per link.
        self._sums_i = np.zeros((2, B, N), dtype=np.int64)
        self._sums_f = np.zeros((2, B, N))
        self.exec_len, self.exec_wait = self._sums_i
        self.backlog_c, self.backlog_k = self._sums_f
        self.in_flight = np.zeros((B, N, N), dtype=np.int64)
        self.send_c = np.zeros((B, N, N))
        self.send_k = np.zeros((B, N, N))
        self._ev_i = np.zeros((R, 2, B, N), dtype=np.int64)
        self._ev_f = np.zeros((R, 2, B, N))
        self._ev_in_flight = np.zeros((R, B, N, N), dtype=np.int64)
        self._ev_send_c = np.zeros((R, B, N, N))
        self._ev_send_k = np.zeros((R, B, N, N))
        self.reward = np.zeros((B, T))
        self.reward_by_decision = np.zeros((B, T))
        self.done = False
        # The arrays one slot updates in place, in the order ``step_slot`` takes them.
        self._state = (self.link_free, self.cpu_free, self.dest, self.outcome, self.end_s, self.tx_start_s,
                       self.tx_s, self.exec_arrive_s, self.pending_arrival_s, self.exec_start_s, self.exec_s,
                       self.due_s, self.reward, self.reward_by_decision, self._sums_i, self._sums_f, self._ev_i,
                       self._ev_f, self._ev_in_flight, self.in_flight, self._ev_send_c, self.send_c,
                       self._ev_send_k, self.send_k)

    @property
    def now_s(self) -> float:
        return self.t * self.slot_s

    def node_state(self) -> NodeState:
        return NodeState(self)

    # ------------------------------------------------------------------ one slot
    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply the destinations chosen at the current boundary (B, N; ignored where no task),
        settle everything that happens during this slot, move to the next boundary.

        Returns the team reward of this slot (B,): outcomes that ended during it (paper
        IV-B); at the last slot the episode is drained and all later outcomes count here.
        """
        if self.done:
            raise RuntimeError("the episodes are over; call reset() or build a new engine")
        actions = np.ascontiguousarray(actions, dtype=np.int64)
        if actions.shape != (self.B, self.N):
            raise ValueError(f"actions must have shape {(self.B, self.N)}, got {actions.shape}")
        has = self.ep.has_task[:, self.t, :]
        if self._check_actions(has, actions, self.N, False):
            j = actions[has]
            raise ValueError(f"destinations must lie in [0, {self.N}); got {j.min()}..{j.max()}")
        return self._settle(actions)

    def _settle(self, actions: np.ndarray) -> np.ndarray:
        """``step`` once its checks have passed (``actions``: (B, N) int64, C order); the vector
        env checks them itself, more strictly, and calls this."""
        t = self.t
        self.done = self._step_slot(t, actions, self.slot_s, self.horizon, self.ring, *self._constants,
                                    *self._state)
        self.t = t + 1
        return self.reward[:, t].copy()

    # ------------------------------------------------------------------ results
    def metrics(self) -> dict[str, np.ndarray]:
        """Per-episode counts, rates and utilisations (``o2o.core.metrics``)."""
        # A transmission ends when the task reaches the destination's queue, or at its drop or
        # failure.
        tx_end = np.where(np.isnan(self.exec_arrive_s), self.end_s, self.exec_arrive_s)
        return episode_metrics(self.ep.has_task, self.outcome, self.dest, self.end_s,
                               self.exec_start_s, self.slot_s, self.tx_start_s, tx_end)
