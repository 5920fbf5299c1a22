"""The engine as it was before its slot became compiled loops (``o2o.sim.kernel``): the batched
array code, kept as the reference the compiled engine is checked against, to the bit.

The batched slotted simulator of the paper's system model (III-A).

B independent episodes run in lockstep as arrays (batch first). Time is continuous inside slots.
The engine is exact, without a per-task event loop, because every queue is FIFO and every
task's service time and failure clock are known when it joins a queue:

* a task that joins send queue i -> j at time a starts at ``max(a, link_free[i, j])``, so its
  drop, failure or arrival at j is settled when the decision is applied;
* arrivals at an execution queue are settled window by window: after the decisions of slot t,
  every arrival in [t, t+1) slots is known (later decisions arrive later), so they are put in
  (time, source) order and run through the node's FIFO at full capacity, one rank at a time,
  vectorized over all (episode, node) pairs.

What a node can see at a slot boundary (queue lengths, receiving queues, backlogs in seconds) is
kept as running sums of +/- events on a ring of future boundaries, so reading it costs O(B N^2)
and never touches individual tasks. Backlogs are *nominal*, as a real node would state them:
remaining work of the running task plus the full work of the waiting ones, with no knowledge of
future failures.
"""

from __future__ import annotations

import math

import numpy as np

from o2o.core.episodes import Episodes
from o2o.core.metrics import episode_metrics
from o2o.core.network import Network
from o2o.core.outcomes import (
    DROP,
    EMPTY,
    EXEC_FAIL,
    PENDING,
    SLOT_TOL,
    SUCCESS,
    TRANS_FAIL,
)
from o2o.core.scenario import Scenario
from o2o.sim.engine import (  # shared: what a node reads, the stage rule
    NodeState,
    settle_stage,
)


class ReferenceEngine:
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
        self._track = True
        self.exec_start_s = np.full(shape, np.nan)
        self.exec_s = np.full(shape, np.nan)  # nominal execution time c / F_j
        self.arrive_s = np.arange(T)[None, :, None] * self.slot_s + np.zeros(shape)
        self.due_s = self.arrive_s + self.ep.deadline_s
        # Observable sums and their +/- events on a ring of future boundaries.
        self.exec_len = np.zeros((B, N), dtype=np.int64)
        self.exec_wait = np.zeros((B, N), dtype=np.int64)
        self.backlog_c = np.zeros((B, N))
        self.backlog_k = np.zeros((B, N))
        self.in_flight = np.zeros((B, N, N), dtype=np.int64)
        self.send_c = np.zeros((B, N, N))
        self.send_k = np.zeros((B, N, N))
        self._ev = {name: np.zeros((R,) + arr.shape, dtype=arr.dtype) for name, arr in self._sums().items()}
        self.reward = np.zeros((B, T))
        self.reward_by_decision = np.zeros((B, T))
        self.done = False

    def _sums(self) -> dict[str, np.ndarray]:
        return {"exec_len": self.exec_len, "exec_wait": self.exec_wait, "backlog_c": self.backlog_c,
                "backlog_k": self.backlog_k, "in_flight": self.in_flight, "send_c": self.send_c,
                "send_k": self.send_k}

    @property
    def now_s(self) -> float:
        return self.t * self.slot_s

    def node_state(self) -> NodeState:
        return NodeState(self)

    # ------------------------------------------------------------------ events
    def _boundaries(self, *times_s: np.ndarray) -> list[np.ndarray]:
        """For each array of times (seconds): the first boundary at or after each time (slots,
        within SLOT_TOL), and the first future one (after the current boundary)."""
        out = []
        for t_s in times_s:
            k = np.ceil(t_s / self.slot_s - SLOT_TOL).astype(np.int64)
            out.append((np.maximum(k, self.t + 1), k))
        return out

    def _during(self, index: tuple, k0: tuple[np.ndarray, np.ndarray], k1: tuple[np.ndarray, np.ndarray],
                unique: bool = True, **values) -> None:
        """Add each value to its observable sum at every future boundary in [t0, t1) seconds,
        t0 and t1 given by their ``_boundaries``. ``unique``: at most one task per (episode,
        resource), so plain indexing adds safely."""
        if not self._track:
            return
        k0, k1 = k0[0], k1[1]
        keep = k1 > k0
        if not keep.any():
            return
        at0 = (k0[keep] % self.ring,) + tuple(ix[keep] for ix in index)
        at1 = (k1[keep] % self.ring,) + at0[1:]
        for name, value in values.items():
            value = value[keep] if isinstance(value, np.ndarray) else value
            ev = self._ev[name]
            if unique:
                ev[at0] += value
                ev[at1] -= value
            else:
                np.add.at(ev, at0, value)
                np.add.at(ev, at1, -value)

    def _end(self, b, t, i, outcome, when) -> None:
        """Settle tasks (b, t, i) with ``outcome`` at time ``when`` and book their reward."""
        if b.size == 0:
            return
        self.outcome[b, t, i] = outcome
        self.end_s[b, t, i] = when
        feedback = np.where(outcome == SUCCESS, 1.0, -1.0)
        slot = np.minimum(np.floor(when / self.slot_s + SLOT_TOL).astype(np.int64), self.T - 1)
        np.add.at(self.reward, (b, slot), feedback)
        np.add.at(self.reward_by_decision, (b, t), feedback)

    # ------------------------------------------------------------------ one slot
    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply the destinations chosen at the current boundary (B, N; ignored where no task),
        settle everything that happens during this slot, move to the next boundary.

        Returns the team reward of this slot (B,): outcomes that ended during it (paper
        IV-B); at the last slot the episode is drained and all later outcomes count here.
        """
        if self.done:
            raise RuntimeError("the episodes are over; call reset() or build a new engine")
        t = self.t
        now = self.now_s
        has = self.ep.has_task[:, t, :]
        b, i = np.nonzero(has)
        j = np.asarray(actions)[b, i].astype(np.int64)
        if j.size and (j.min() < 0 or j.max() >= self.N):
            raise ValueError(f"destinations must lie in [0, {self.N}); got {j.min()}..{j.max()}")
        self.dest[b, t, i] = j
        self.exec_s[b, t, i] = self.ep.cycles[b, t, i] / self.net.capacity_hz[j]
        self._send(b, i, j, t, now)
        self._execute_window(t)
        self._advance()
        if t == self.T - 1:
            self._drain()
            self.done = True
        return self.reward[:, t].copy()

    def _send(self, b, i, j, t, now) -> None:
        """Local tasks join their own exec queue now; the others join send queue i -> j
        (paper III-A, eqs. 1-5), settled at once since the link is FIFO."""
        local = j == i
        self.exec_arrive_s[b[local], t, i[local]] = now
        self.pending_arrival_s[b[local], t, i[local]] = now
        b, i, j = b[~local], i[~local], j[~local]
        if b.size == 0:
            return
        tx = self.ep.size_bytes[b, t, i] / self.net.link_rate_Bps[i, j]
        start, end, dropped, failed = settle_stage(
            now, self.link_free[b, i, j], tx, self.exec_s[b, t, i], self.due_s[b, t, i],
            self.ep.tx_fail_clock[b, t, i] * self.inv_beta[i, j])
        self.link_free[b, i, j] = end  # a dropped task uses no link time: end == start
        self.tx_s[b, t, i] = tx
        self.tx_start_s[b, t, i] = start
        ok = ~dropped & ~failed
        self.exec_arrive_s[b[ok], t, i[ok]] = end[ok]
        self.pending_arrival_s[b[ok], t, i[ok]] = end[ok]
        lost = ~ok
        self._end(b[lost], t, i[lost], np.where(dropped[lost], DROP, TRANS_FAIL), end[lost])
        if not self._track:
            return
        k_now, k_start, k_end = self._boundaries(np.full(b.shape, now), start, end)
        # in_flight is kept receiver-major: row j holds the receiving queues of j.
        self._during((b, j, i), k_now, k_end, in_flight=1)
        self._during((b, i, j), k_now, k_start, send_c=tx)         # waiting: the full s / r_ij
        self._during((b, i, j), k_start, k_end, send_c=start + tx, send_k=1.0)  # on the wire

    def _execute_window(self, window: int) -> None:
        """Run every arrival at an execution queue during slot ``window`` through its node's
        FIFO at full capacity (paper III-A, eqs. 1-5)."""
        lo = max(0, window - self.horizon)
        pending = self.pending_arrival_s[:, lo:window + 1, :]
        b, dt, i = np.nonzero(pending < (window + 1 - SLOT_TOL) * self.slot_s)
        if b.size == 0:
            return
        ts = dt + lo
        self.pending_arrival_s[b, ts, i] = np.inf
        j = self.dest[b, ts, i]
        when = self.exec_arrive_s[b, ts, i]
        # FIFO order per destination queue: by arrival time, ties by source node.
        order = np.lexsort((i, when, j, b))
        self._run_fifo(b[order], ts[order], i[order], j[order], when[order])

    def _run_fifo(self, b, ts, i, j, when) -> None:
        """Run arrivals, sorted by (episode, node, time, source), through each node's CPU. The
        k-th arrival of every queue is settled together (rank k), in rank order."""
        group_start = np.r_[True, (b[1:] != b[:-1]) | (j[1:] != j[:-1])]
        first = np.maximum.accumulate(np.where(group_start, np.arange(b.size), 0))
        rank = np.arange(b.size) - first
        by_rank = np.argsort(rank, kind="stable")
        b, ts, i, j, when = b[by_rank], ts[by_rank], i[by_rank], j[by_rank], when[by_rank]
        bounds = np.r_[0, np.cumsum(np.bincount(rank))]
        exec_s = self.exec_s[b, ts, i]
        due = self.due_s[b, ts, i]
        fail_after = self.ep.exec_fail_clock[b, ts, i] * self.inv_alpha[j]
        start = np.empty_like(when)
        end = np.empty_like(when)
        dropped = np.empty(when.shape, dtype=bool)
        failed = np.empty(when.shape, dtype=bool)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            at = slice(lo, hi)
            start[at], end[at], dropped[at], failed[at] = settle_stage(
                when[at], self.cpu_free[b[at], j[at]], exec_s[at], 0.0, due[at], fail_after[at])
            self.cpu_free[b[at], j[at]] = end[at]
        self.exec_start_s[b, ts, i] = start
        self._end(b, ts, i, np.where(dropped, DROP, np.where(failed, EXEC_FAIL, SUCCESS)), end)
        node = (b, j)
        unique = bounds.size <= 2  # one arrival per queue: plain indexing adds safely
        if not self._track:
            return
        k_when, k_start, k_end = self._boundaries(when, start, end)
        self._during(node, k_when, k_end, unique, exec_len=1)
        self._during(node, k_when, k_start, unique, exec_wait=1, backlog_c=exec_s)  # waiting: full c / F_j
        self._during(node, k_start, k_end, unique, backlog_c=start + exec_s, backlog_k=1.0)  # running

    def _advance(self) -> None:
        self.t += 1
        k = self.t % self.ring
        for name, arr in self._sums().items():
            ev = self._ev[name]
            arr += ev[k]
            ev[k] = 0

    def _drain(self) -> None:
        """After slot T-1 no task arrives; run the queues until every task has an outcome.
        What nodes observe is no longer read, so the observable sums are left alone."""
        self._track = False
        for window in range(self.T, self.T + self.horizon + 2):
            self._execute_window(window)
        if (self.outcome == PENDING).any():
            raise AssertionError("drain left tasks without an outcome")

    # ------------------------------------------------------------------ results
    def metrics(self) -> dict[str, np.ndarray]:
        """Per-episode counts, rates and utilisations (``o2o.core.metrics``)."""
        # A transmission ends when the task reaches the destination's queue, or at its drop or
        # failure.
        tx_end = np.where(np.isnan(self.exec_arrive_s), self.end_s, self.exec_arrive_s)
        return episode_metrics(self.ep.has_task, self.outcome, self.dest, self.end_s,
                               self.exec_start_s, self.slot_s, self.tx_start_s, tx_end)
