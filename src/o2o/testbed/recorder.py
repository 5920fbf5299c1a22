"""The controller's record of one testbed episode, turned into the task log's ``EpisodeLog``.

Tasks come from the episode's draws (``o2o.core.episodes``); the nodes report what happened to
them: the source node its decision (with what it saw: the log's observation fields), the
destination the arrival of the payload, and whichever node holds the task when it ends its
outcome. The recorder keeps each task's **stage** (new -> send -> exec -> done) and so knows
which node holds it; when a node dies, every unsettled task it holds ends as a failure:

=====================================  ======================================================
task                                   outcome when node k dies
=====================================  ======================================================
arrived at k, not yet decided          EXECUTION_FAILURE (the node failed with the task)
in k's send queue or on a link from k  TRANSMISSION_FAILURE
queued or on the wire towards k        TRANSMISSION_FAILURE (the receiver is gone)
in k's execution queue                 EXECUTION_FAILURE
=====================================  ======================================================

A task that arrives at a node that is not part of the episode (dead, or restarted and waiting
for the next episode) fails at once (EXECUTION_FAILURE, destination = itself): no row is lost.
The first outcome a task gets is final; later reports of it are ignored.

Times are on the controller clock here and converted to seconds since the episode's start
(slot 0 boundary, ``epoch``) in the log. ``tx_s`` and ``exec_s`` are nominal (s/r_ij, c/F_j)
as in the simulator's log; ``tx_wait_s`` runs from the task's nominal arrival (the slot
boundary) to the start of its transfer, so it includes the delivery of the task to the node and
the decision (probes), which a real system pays.
"""

from __future__ import annotations

import asyncio

import numpy as np

from o2o.core.episodes import Episodes
from o2o.core.metrics import episode_metrics
from o2o.core.network import Network
from o2o.core.outcomes import (
    EMPTY,
    EXEC_FAIL,
    OUTCOME_CODES,
    PENDING,
    TRANS_FAIL,
)
from o2o.core.scenario import Scenario
from o2o.logs.records import EpisodeLog
from o2o.testbed.wire import Decision, TaskEvent, UnexpectedMessage

STAGE_NEW, STAGE_SEND, STAGE_EXEC = 0, 1, 2


class EpisodeRecorder:
    def __init__(self, scenario: Scenario, network: Network, episodes: Episodes, index: int,
                 epoch: float):
        if episodes.batch != 1:
            raise ValueError("the recorder takes one episode")
        self.scenario, self.network = scenario, network
        self.seed, self.index, self.epoch = int(episodes.seeds[0]), index, epoch
        self.T, self.N = T, N = scenario.slots, network.n
        self.has_task = episodes.has_task[0].copy()
        self.size_bytes = episodes.size_bytes[0]
        self.cycles = episodes.cycles[0]
        self.deadline_s = episodes.deadline_s[0]
        self.arrive_s = (np.arange(T) * scenario.slot_s)[:, None] + np.zeros((T, N))
        nan = lambda: np.full((T, N), np.nan)  # noqa: E731
        self.outcome = np.where(self.has_task, PENDING, EMPTY).astype(np.int8)
        self.stage = np.zeros((T, N), dtype=np.int8)
        self.action = np.full((T, N), N, dtype=np.int64)
        self.dest = np.full((T, N), -1, dtype=np.int64)
        self.action_prob = nan()
        self.end_at, self.tx_start, self.tx_end = nan(), nan(), nan()
        self.exec_arrive, self.exec_start = nan(), nan()
        self.exec_len = np.zeros((T, N), dtype=np.int64)
        self.recv_len = np.zeros((T, N, N), dtype=np.int64)
        self.peer_overloaded = np.zeros((T, N, N), dtype=bool)
        self.peer_backlog_s = np.full((T, N, N), np.nan)   # NaN: not reported (not probed)
        self.send_backlog_s = np.full((T, N, N), np.nan)
        self.final_exec_len = np.zeros(N, dtype=np.int64)
        self.final_recv_len = np.zeros((N, N), dtype=np.int64)
        self.final_peer_overloaded = np.zeros((N, N), dtype=bool)
        self.observed = np.zeros((T + 1, N), dtype=bool)
        self.decision_latency_s: list[float] = []
        self.deaths: list[dict] = []
        self.pending = int(self.has_task.sum())
        self.gave_up = 0
        self.complete = asyncio.Event()
        if self.pending == 0:
            self.complete.set()

    # ------------------------------------------------------------------ settling
    def _settle(self, t: int, i: int, outcome: int, at: float) -> bool:
        if self.outcome[t, i] != PENDING:
            return False
        self.outcome[t, i] = outcome
        self.end_at[t, i] = at
        self.pending -= 1
        if self.pending == 0:
            self.complete.set()
        return True

    def _set_dest(self, t: int, i: int, j: int) -> None:
        if self.dest[t, i] < 0:
            self.dest[t, i] = j
            self.action[t, i] = j

    # ------------------------------------------------------------------ reports
    def on_decision(self, node: int, msg: Decision) -> None:
        """What ``node`` saw at slot ``msg.slot`` and what it chose; UnexpectedMessage if the
        report cannot be true."""
        t, n = msg.slot, self.N
        if msg.node != node:
            raise UnexpectedMessage(f"node {node} reported a decision of node {msg.node}")
        if t > self.T:
            raise UnexpectedMessage(f"decision for slot {t}, the episode has {self.T}")
        if len(msg.recv_len) != n or len(msg.peer_overloaded) != n:
            raise UnexpectedMessage(f"decision vectors must have {n} entries")
        if t == self.T:   # the boundary after the last slot: the last next-observation
            self.final_exec_len[node] = msg.exec_len
            self.final_recv_len[node] = msg.recv_len
            self.final_peer_overloaded[node] = msg.peer_overloaded
            self.observed[t, node] = True
            return
        if msg.has_task != bool(self.has_task[t, node]):
            raise UnexpectedMessage(f"node {node} slot {t}: has_task {msg.has_task} disagrees with the episode")
        if not msg.has_task and msg.action != n:
            raise UnexpectedMessage(f"node {node} slot {t}: no task but action {msg.action}")
        if msg.has_task and not 0 <= msg.action < n:
            raise UnexpectedMessage(f"node {node} slot {t}: action {msg.action} is not a node")
        if self.observed[t, node]:
            return
        self.observed[t, node] = True
        self.exec_len[t, node] = msg.exec_len
        self.recv_len[t, node] = msg.recv_len
        self.peer_overloaded[t, node] = msg.peer_overloaded
        for name, values in (("peer_backlog_s", msg.peer_backlog_s), ("send_backlog_s", msg.send_backlog_s)):
            if values is not None:
                if len(values) != n:
                    raise UnexpectedMessage(f"decision vectors must have {n} entries")
                getattr(self, name)[t, node] = [np.nan if v is None else v for v in values]
        if not msg.has_task:
            return
        self.decision_latency_s.append(msg.decided_at - (self.epoch + self.arrive_s[t, node]))
        self._set_dest(t, node, msg.action)
        if msg.action_prob is not None:
            self.action_prob[t, node] = msg.action_prob
        if msg.action == node:
            self.exec_arrive[t, node] = msg.decided_at
            self.stage[t, node] = max(self.stage[t, node], STAGE_EXEC)
        else:
            self.stage[t, node] = max(self.stage[t, node], STAGE_SEND)

    def on_event(self, node: int, msg: TaskEvent) -> None:
        t, i = msg.slot, msg.source
        if t >= self.T or i >= self.N or not self.has_task[t, i]:
            raise UnexpectedMessage(f"event for slot {t} node {i}: there is no such task")
        if msg.dest >= self.N or (self.dest[t, i] >= 0 and self.dest[t, i] != msg.dest):
            raise UnexpectedMessage(f"task ({t}, {i}): event for destination {msg.dest}")
        if node not in (i, msg.dest):
            raise UnexpectedMessage(f"node {node} reported task ({t}, {i}) it never held")
        self._set_dest(t, i, msg.dest)
        for name in ("tx_start", "tx_end", "exec_arrive", "exec_start"):
            value = getattr(msg, name)
            if value is not None and np.isnan(getattr(self, name)[t, i]):
                getattr(self, name)[t, i] = value
        if msg.kind == "arrived":
            self.stage[t, i] = max(self.stage[t, i], STAGE_EXEC)
        else:
            if msg.outcome is None or msg.end_at is None:
                raise UnexpectedMessage(f"task ({t}, {i}): an end event needs outcome and end_at")
            self._settle(t, i, OUTCOME_CODES[msg.outcome], msg.end_at)

    # ------------------------------------------------------------------ faults
    def node_died(self, k: int, at: float, detected_by: str) -> int:
        """Settle every unsettled task that node k holds (see the module table)."""
        slot = int(np.floor((at - self.epoch) / self.scenario.slot_s))
        self.deaths.append({"node": k, "at_s": at - self.epoch, "slot": slot, "detected_by": detected_by})
        ts, srcs = np.nonzero(self.outcome == PENDING)
        settled = 0
        for t, i in zip(ts.tolist(), srcs.tolist()):
            stage, j = self.stage[t, i], self.dest[t, i]
            if stage == STAGE_NEW and i == k and self.epoch + self.arrive_s[t, i] <= at:
                # Handed to k already (later slots of k are settled as absent when they come).
                self._set_dest(t, i, k)
                settled += self._settle(t, i, EXEC_FAIL, at)
            elif stage == STAGE_SEND and k in (i, j):
                settled += self._settle(t, i, TRANS_FAIL, at)
            elif stage == STAGE_EXEC and j == k:
                settled += self._settle(t, i, EXEC_FAIL, at)
        return settled

    def node_absent(self, t: int, k: int, at: float) -> None:
        """Slot t's task of node k, which is not in the episode: it fails where it arrived."""
        if self.has_task[t, k] and self.outcome[t, k] == PENDING:
            self._set_dest(t, k, k)
            self._settle(t, k, EXEC_FAIL, at)

    def give_up(self, at: float) -> int:
        """Settle what is still unsettled after the drain timeout (should not happen: counted
        and reported). A task still being sent failed in transmission, else in execution."""
        ts, srcs = np.nonzero(self.outcome == PENDING)
        for t, i in zip(ts.tolist(), srcs.tolist()):
            if self.dest[t, i] < 0:
                self._set_dest(t, i, i)
            code = TRANS_FAIL if self.stage[t, i] == STAGE_SEND else EXEC_FAIL
            self._settle(t, i, code, at)
        self.gave_up += len(ts)
        return len(ts)

    @property
    def latest_due(self) -> float:
        """Controller-clock time by which every task's deadline has passed."""
        due = np.where(self.has_task, self.arrive_s + self.deadline_s, 0.0)
        return self.epoch + float(due.max(initial=0.0))

    # ------------------------------------------------------------------ results
    def to_log(self) -> EpisodeLog:
        has, n = self.has_task, self.N
        rel = lambda a: a - self.epoch  # noqa: E731
        dest = np.where(self.dest >= 0, self.dest, 0)
        remote = has & (self.dest != np.arange(n)[None, :])
        rate = self.network.link_rate_Bps[np.arange(n)[None, :], dest]
        task = lambda a: np.where(has, a, np.nan)  # noqa: E731
        log = EpisodeLog(
            episode_seed=self.seed, episode_index=self.index, has_task=has.copy(),
            size_bytes=task(self.size_bytes), cycles=task(self.cycles), deadline_s=task(self.deadline_s),
            action=self.action.copy(), action_prob=task(self.action_prob), dest=self.dest.copy(),
            outcome=self.outcome.copy(), end_s=task(rel(self.end_at)),
            tx_wait_s=task(np.where(remote, rel(self.tx_start) - self.arrive_s, 0.0)),
            tx_s=task(np.where(remote, self.size_bytes / rate, 0.0)),
            exec_wait_s=task(self.exec_start - self.exec_arrive),
            exec_s=task(self.cycles / self.network.capacity_hz[dest]),
            exec_len=self.exec_len.copy(), recv_len=self.recv_len.copy(),
            peer_overloaded=self.peer_overloaded.copy(), final_exec_len=self.final_exec_len.copy(),
            peer_backlog_s=self.peer_backlog_s.copy(), send_backlog_s=self.send_backlog_s.copy(),
            final_recv_len=self.final_recv_len.copy(),
            final_peer_overloaded=self.final_peer_overloaded.copy())
        log.validate()
        return log

    def metrics(self) -> dict:
        """This episode's figures, defined as the simulator's (``o2o.core.metrics``)."""
        rel = lambda a: (a - self.epoch)[None]  # noqa: E731  (seconds since the episode's start)
        # A transmission that did not arrive ended with the task (its drop or failure).
        tx_end = np.where(np.isnan(self.tx_end), self.end_at, self.tx_end)
        m = episode_metrics(self.has_task[None], self.outcome[None], self.dest[None], rel(self.end_at),
                            rel(self.exec_start), self.scenario.slot_s, rel(self.tx_start), rel(tx_end))
        out = {k: v[0] for k, v in m.items()}
        # The probe requests the nodes sent, as the simulator counts them (``probes``), so the
        # table's probes/task is measured here too, not "full" (which marks the planner).
        out["probes"] = probe_requests(self.has_task, self.peer_backlog_s)
        return out


def probe_requests(has_task: np.ndarray, peer_backlog_s: np.ndarray) -> int:
    """Probe requests of one episode's deciding nodes: a node reports the backlog of exactly the
    peers it sent a probe request to (NaN for the others), and its own needs no request."""
    has = np.asarray(has_task, dtype=bool)
    off = ~np.eye(peer_backlog_s.shape[-1], dtype=bool)[None]
    return int((np.isfinite(peer_backlog_s) & has[..., None] & off).sum())


def stack_metrics(per_episode: list[dict]) -> dict[str, np.ndarray]:
    """Per-episode metric dicts -> arrays over episodes, as ``o2o.sim.rollout.simulate`` returns."""
    return {k: np.asarray([m[k] for m in per_episode]) for k in per_episode[0]}
