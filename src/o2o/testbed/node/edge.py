"""An edge node of the testbed: one OS process, one asyncio event loop (the Execution Layer of
paper VI-A). This module wires the parts together and does the waiting and the I/O:

* a **TCP server** for the data links and probe links of its peers (anything that does not
  authenticate is rejected, see ``o2o.testbed.wire``); arriving payloads go through the
  receiving queues (``receiving``) into the execution queue;
* the **execution queue** and the **send queues** (``queues``: the drop and failure rules at
  their heads). An execution is emulated by default (busy for c/F_j seconds, an absolute
  deadline); ``exec_mode = "compute"`` burns real CPU work instead (``compute``). A transfer
  sends the task's real payload (s bytes) in chunks, each released when its last byte would
  have crossed a link of rate r_ij, so the payload arrives s/r_ij after the transfer started
  (``pacing = "user"``); or, when the kernel shapes the link to r_ij (``pacing = "kernel"``,
  ``o2o.testbed.netns``), at full speed on the payload link, the link busy until the
  receiver's TCP has acknowledged every byte;
* **probes** answered from live state: capacity, alpha, execution backlog in seconds (nominal)
  and the 1-bit overload flag, which is also pushed to every peer when it flips, so a node
  knows every peer's flag for the action mask (paper IV-B) without probing everyone;
* at each slot the **decision** (``decide``) with real probes, over the links (``links``);
* the **controller session** (``session``): registration, heartbeats, configuration, models.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from o2o.core.network import Network
from o2o.core.outcomes import DROP, OUTCOME_NAMES, TRANS_FAIL
from o2o.core.scenario import Scenario, scenario_from_dict
from o2o.testbed import wire
from o2o.testbed.node.compute import burn, burn_rate_Bps
from o2o.testbed.node.decide import Decider, node_view, probe_nodes
from o2o.testbed.node.links import PeerLinks
from o2o.testbed.node.queues import Ended, ExecQueue, NodeQueues, SendQueue, Stage, Task
from o2o.testbed.node.receiving import ReceivingQueues
from o2o.testbed.node.session import ControllerSession, load_announced_model
from o2o.testbed.node.settings import CONNECT_TIMEOUT_S, MAX_BAD_FRAMES, NodeSettings
from o2o.testbed.timing import Clock, sleep_until

log = logging.getLogger("o2o.testbed.node")

PAYLOAD_BUFFER_BYTES = 256 * 1024
MIN_CHUNK_BYTES = 16 * 1024
MAX_CHUNK_BYTES = 256 * 1024
LAST_CHUNK_SPIN_S = 0.001
# Chunks on a kernel-shaped link: the receiver checks a frame's tag once all of it is there, so
# a small frame keeps the time between the last byte and the arrival short.
SHAPED_CHUNK_BYTES = 64 * 1024
SHAPED_POLL_S = 0.0005          # polling the kernel for unacknowledged bytes near a transfer's end


class EdgeNode:
    def __init__(self, settings: NodeSettings):
        self.settings = settings
        self.index: int | None = settings.index
        self.clock = Clock()
        self.rejected: Counter = Counter()
        self.server = wire.FramedServer(self._on_connection)
        self.port = 0
        self._stop = asyncio.Event()
        self._background: set[asyncio.Task] = set()
        self.session = ControllerSession(self, settings, self.clock, self._stop)
        # Set by the configuration.
        self.scenario: Scenario | None = None
        self.network: Network | None = None
        self.runtime = wire.NodeRuntime()
        self.links = PeerLinks(settings.key, self._link_lost, lambda: self.overloaded)
        self.incoming_conns: dict[int, wire.FramedConnection] = {}
        self.decider = Decider()
        # Episode state.
        self.episode: int | None = None
        self.epoch = 0.0
        self.workers: list[asyncio.Task] = []
        self._reset_state()
        self._burn_Bps = 0.0
        self._cpu: ThreadPoolExecutor | None = None
        self._payload = memoryview(os.urandom(PAYLOAD_BUFFER_BYTES))

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        """Fresh queues for an episode (empty ones before the configuration)."""
        n = self.n
        self.queues = NodeQueues(self.network, self.index) if n else None
        self.receiving = ReceivingQueues(n)
        self._exec_wake = asyncio.Event()
        self._send_wake: dict[int, asyncio.Event] = {j: asyncio.Event() for j in range(n)}
        self.peer_overloaded = np.zeros(n, dtype=bool)
        self._flag_sent = False
        self.slot_lateness: list[float] = []
        self.transfers: list[tuple[float, float, float]] = []
        self.sent: list[tuple[float, float, float]] = []

    @property
    def n(self) -> int:
        return self.network.n if self.network is not None else 0

    @property
    def overloaded(self) -> bool:
        return self.queues is not None and self.queues.exec.overloaded

    def _sync_overload(self) -> None:
        """Push the 1-bit flag to every peer when it flipped."""
        flag = self.overloaded
        if flag == self._flag_sent:
            return
        self._flag_sent = flag
        self.peer_overloaded[self.index] = flag
        self.links.broadcast(wire.Overload(flag=flag))

    # ------------------------------------------------------------------ reporting
    def report(self, msg) -> None:
        self.session.report(msg)

    def _report_end(self, ended: Ended) -> None:
        task = ended.task
        self.report(wire.TaskEvent(
            episode=task.episode, slot=task.slot, source=task.source, dest=task.dest, kind="end",
            outcome=OUTCOME_NAMES[ended.outcome], tx_start=task.tx_start, tx_end=task.tx_end,
            exec_arrive=task.exec_arrive, exec_start=task.exec_start, end_at=ended.at))

    def reject(self, where: str, exc: BaseException) -> None:
        reason = getattr(exc, "reason", type(exc).__name__)
        self.rejected[reason] += 1
        log.warning("rejected message from %s (%s): %s", where, reason, exc)

    def rejected_counts(self) -> dict[str, int]:
        return dict(self.rejected)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> int:
        s = self.settings
        self.port = await self.server.start(s.listen_host, s.listen_port, "node")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        heartbeat = asyncio.create_task(self.session.heartbeats())
        session = asyncio.create_task(self.session.run())
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({session, stop}, return_when=asyncio.FIRST_COMPLETED)
            if session.done() and not session.cancelled() and session.exception() is not None:
                raise session.exception()
        finally:
            for t in (heartbeat, session, stop, *self.workers, *self._background):
                t.cancel()
            self.links.close()
            self.session.close()
            # Close the peers' connections ourselves and let their handlers return.
            await self.server.close()
            if self._cpu is not None:
                self._cpu.shutdown(wait=False, cancel_futures=True)
        return self.session.exit_code

    def _spawn(self, coro) -> None:
        """Run a handler in the background, keeping a reference and logging a failure loudly."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.rejected["internal_error"] += 1
            log.error("internal error in a handler", exc_info=task.exception())

    # ------------------------------------------------------------------ controller messages
    def configure(self, msg: wire.Config) -> None:
        scenario = scenario_from_dict(msg.scenario)
        network = Network.from_dict(msg.network)
        if network.n != scenario.nodes or not 0 <= msg.node < network.n:
            raise wire.MalformedMessage("configuration: network, scenario and node index disagree")
        first = self.network is None or network.n != self.n
        self.scenario, self.network, self.index = scenario, network, msg.node
        self.runtime = msg.runtime
        self.settings.max_frame_bytes = msg.runtime.max_frame_bytes
        self.links.me, self.links.max_frame_bytes = msg.node, msg.runtime.max_frame_bytes
        self.links.payload_links = msg.runtime.pacing == "kernel"
        if first:
            self._reset_state()
        if self.runtime.exec_mode == "compute" and not self._burn_Bps:
            self._burn_Bps = burn_rate_Bps()
            self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpu")
            log.info("real-compute mode: %.0f MB/s of SHA-256 per thread, scale %g",
                     self._burn_Bps / 1e6, self.runtime.compute_scale)
        self.links.set_peers(msg.peers, msg.alive, network.n)

    def on_controller_message(self, msg) -> None:
        if isinstance(msg, wire.Slot):
            if msg.episode == self.episode:
                self._spawn(self._on_slot(msg))
        elif isinstance(msg, wire.Peers):
            self.links.set_peers(msg.peers, msg.alive, self.n)
        elif isinstance(msg, wire.Prepare):
            self._spawn(self._prepare(msg))
        elif isinstance(msg, wire.EpisodeStart):
            self._start_episode(msg)
        elif isinstance(msg, wire.EpisodeEnd):
            self._end_episode(msg)
        elif isinstance(msg, wire.ModelAvailable):
            self.decider.pending_model = msg
        else:
            raise wire.UnexpectedMessage(f"{msg.type} is not a controller message")

    def _link_lost(self, j: int) -> None:
        """The links to peer j broke (or j left): tasks queued towards it fail in transmission."""
        queue = self.queues.send.get(j) if self.queues is not None else None
        if queue is not None:
            for ended in queue.fail_waiting(self.clock.now()):
                self._report_end(ended)

    async def _prepare(self, msg: wire.Prepare) -> None:
        """Between episodes: links up, pending model loaded, rule built; then ``ready``."""
        await self.links.wait_connecting(CONNECT_TIMEOUT_S * 2)
        error = None
        d = self.decider
        if d.pending_model is not None:
            ann = d.pending_model
            model, problem = await load_announced_model(ann, self.n)
            if problem is None:
                d.use_model(model, ann.version, ann.sha256)
            else:
                error = f"node {self.index}: {problem}"
            d.pending_model = None
        if error is None:
            # Off the event loop: building ``drl`` loads the observation's compiled loops (about
            # a second), and heartbeats and peers must not wait for it.
            error = await asyncio.to_thread(d.build, msg.scheduler, self.scenario, self.network, self.index,
                                            msg.params)
        down = self.links.down()
        if error is None and down:
            error = f"node {self.index} has no link to node(s) {down}"
        self.report(wire.Ready(round=msg.round, model_version=d.model_version,
                               model_sha256=d.model_sha256, error=error))

    def _start_episode(self, msg: wire.EpisodeStart) -> None:
        d = self.decider
        if d.rule is None or msg.scheduler != d.scheduler_name:
            error = d.build(msg.scheduler, self.scenario, self.network, self.index)
            if error is not None:
                raise wire.UnexpectedMessage(error)
        for t in self.workers:
            t.cancel()
        self._reset_state()
        self.episode, self.epoch = msg.episode, msg.epoch
        self.workers = [asyncio.create_task(self._executor(self.queues.exec))]
        self.workers += [asyncio.create_task(self._sender(j, q)) for j, q in self.queues.send.items()]

    def _end_episode(self, msg: wire.EpisodeEnd) -> None:
        if msg.episode != self.episode:
            return
        for t in self.workers:
            t.cancel()
        self.workers = []
        self.report(wire.EpisodeStats(episode=msg.episode, slot_lateness_s=self.slot_lateness,
                                      transfers=self.transfers, sent=self.sent,
                                      rejected=dict(self.rejected)))
        self.episode = None

    # ------------------------------------------------------------------ deciding
    async def _on_slot(self, msg: wire.Slot) -> None:
        """Slot boundary: observe, and with a task probe, choose and dispatch (paper IV-B)."""
        received_at = self.clock.now()
        boundary = self.epoch + msg.slot * self.scenario.slot_s
        self.slot_lateness.append(received_at - boundary)
        i, n = self.index, self.n
        exec_len = self.queues.exec.length
        recv_len = self.receiving.recv_len.copy()
        if msg.task is None:
            self.report(wire.Decision(
                episode=msg.episode, slot=msg.slot, node=i, has_task=False, action=n,
                exec_len=exec_len, recv_len=recv_len.tolist(),
                peer_overloaded=self.peer_overloaded.tolist(), received_at=received_at,
                decided_at=received_at))
            return
        spec = msg.task
        task = Task(episode=msg.episode, slot=msg.slot, source=i, size_bytes=spec.size_bytes,
                    cycles=spec.cycles, deadline_s=spec.deadline_s, due=boundary + spec.deadline_s,
                    tx_fail_clock=spec.tx_fail_clock, exec_fail_clock=spec.exec_fail_clock)
        view = node_view(self.network, i, spec, task.due - received_at, exec_len,
                         self.queues.exec.waiting_len, recv_len, self.queues.send_backlog_s(received_at))
        dest, prob, backlog = await self.decider.choose(
            view, self._probe, lambda: self.queues.exec.backlog_s(received_at))
        decided_at = self.clock.now()
        self.report(wire.Decision(
            episode=msg.episode, slot=msg.slot, node=i, has_task=True, action=dest, action_prob=prob,
            exec_len=exec_len, recv_len=recv_len.tolist(),
            peer_overloaded=self.peer_overloaded.tolist(), received_at=received_at,
            decided_at=decided_at, peer_backlog_s=backlog,
            send_backlog_s=view.send_backlog_s[0].tolist()))
        if msg.episode != self.episode:
            return
        task.dest = dest
        if dest == i:
            task.exec_arrive = decided_at
            self._enqueue_exec(task)
        else:
            self.queues.send[dest].push(task)
            link = self.links.get(dest)
            if link is not None:
                link.try_send(wire.Announce(episode=task.episode, slot=task.slot, source=i))
            self._send_wake[dest].set()

    async def _probe(self, targets: np.ndarray):
        return await probe_nodes(targets, self.index, self.network, self._probe_one,
                                 lambda: self._probe_answer(0), self.peer_overloaded)

    async def _probe_one(self, j: int) -> wire.ProbeAnswer | None:
        link = self.links.get(j)
        if link is None or j not in self.links.alive:
            return None
        return await link.probe(self.runtime.probe_timeout_s)

    def _probe_answer(self, pid: int) -> wire.ProbeAnswer:
        ex = self.queues.exec
        return wire.ProbeAnswer(
            id=pid, capacity_hz=ex.capacity_hz, node_fail_rate=ex.fail_rate,
            exec_backlog_s=ex.backlog_s(self.clock.now()), overloaded=self.overloaded,
            exec_len=ex.length)

    # ------------------------------------------------------------------ executing
    def _enqueue_exec(self, task: Task) -> None:
        self.queues.exec.push(task)
        self._sync_overload()
        self._exec_wake.set()

    async def _executor(self, queue: ExecQueue) -> None:
        """The FIFO execution queue at full capacity (paper III-A)."""
        while True:
            while not queue.waiting:
                self._exec_wake.clear()
                await self._exec_wake.wait()
            step = queue.start_next(self.clock.now())
            self._sync_overload()
            if isinstance(step, Ended):          # cannot make its deadline: dropped at the head
                self._report_end(step)
                continue
            try:
                outcome, at = await self._execute(queue, step)
            finally:
                queue.finish(step)
            self._report_end(Ended(step.task, outcome, at))

    async def _execute(self, queue: ExecQueue, stage: Stage) -> tuple[int, float]:
        if self.runtime.exec_mode == "emulated":
            # Busy for T^c, or until the failure clock runs out inside it.
            await sleep_until(self.clock, stage.ends_at)
            return queue.nominal_outcome(stage), self.clock.now()
        # Real compute: as much hashing as this host does in c/F_j seconds, scaled; a real run
        # can be slowed by contention, so it is stopped at the failure time or the deadline.
        work = self._burn_Bps * stage.stage_s * self.runtime.compute_scale
        done = await asyncio.get_running_loop().run_in_executor(
            self._cpu, burn, work, self.clock.to_local(queue.real_stop_at(stage)))
        return queue.real_outcome(stage, done), self.clock.now()

    # ------------------------------------------------------------------ sending
    async def _sender(self, j: int, queue: SendQueue) -> None:
        """Send queue i -> j: one task at a time at rate r_ij."""
        wake = self._send_wake[j]
        while True:
            while not queue.waiting:
                wake.clear()
                await wake.wait()
            link = self.links.get(j)
            step = queue.start_next(self.clock.now(), link is not None and link.up)
            if isinstance(step, Ended):
                if step.outcome == DROP and link is not None:
                    link.try_send(wire.Cancel(episode=step.task.episode, slot=step.task.slot,
                                              source=step.task.source))
                self._report_end(step)
                continue
            try:
                arrived = await self._transfer(link, queue, step)
                outcome = None if arrived else TRANS_FAIL
            except ConnectionError:
                outcome = TRANS_FAIL
            finally:
                queue.finish(step)
            if outcome is not None:
                self._report_end(Ended(step.task, outcome, self.clock.now()))

    async def _transfer(self, link, queue: SendQueue, stage: Stage) -> bool:
        """Stream the payload paced at r_ij; the link fails at ``stage.fail_at`` if that falls
        inside the transfer. True when the payload reached the destination, which reports the
        task from then on."""
        if self.runtime.pacing == "kernel":
            return await self._transfer_shaped(link, queue, stage)
        task, start, tx_s, rate = stage.task, stage.start, stage.stage_s, queue.rate_Bps
        nbytes = max(int(round(task.size_bytes)), 1)
        ref = dict(episode=task.episode, slot=task.slot, source=task.source)
        link.send(wire.PayloadBegin(**ref, size_bytes=nbytes, task_size_bytes=task.size_bytes,
                                    cycles=task.cycles, deadline_s=task.deadline_s, due=task.due,
                                    exec_fail_clock=task.exec_fail_clock, tx_start=start))
        chunk = int(min(max(rate * self.runtime.chunk_s, MIN_CHUNK_BYTES), MAX_CHUNK_BYTES))
        fail_at = stage.fail_at
        sent = 0
        while sent < nbytes:
            size = min(chunk, nbytes - sent, PAYLOAD_BUFFER_BYTES)
            # Release the chunk when its last byte would have crossed a link of rate r_ij.
            release_at = start + (sent + size) / nbytes * tx_s
            if fail_at < release_at:
                await sleep_until(self.clock, fail_at)
                link.send(wire.PayloadAbort(**ref))
                return False
            last = sent + size >= nbytes
            # The last chunk decides when the payload is complete: poll its final millisecond.
            await sleep_until(self.clock, release_at, LAST_CHUNK_SPIN_S if last else 0.0)
            link.send(wire.Chunk(**ref), self._payload[:size])
            await link.drain()
            sent += size
        link.send(wire.PayloadEnd(**ref))
        self.sent.append((task.size_bytes, rate, self.clock.now() - start))
        return True

    async def _transfer_shaped(self, link, queue: SendQueue, stage: Stage) -> bool:
        """The same transfer on a link the kernel shapes to r_ij: the payload is written at full
        speed and the link stays busy until the receiver's TCP has acknowledged every byte (the
        sender's kernel knows: the receiving process need not run for it). A transfer whose
        failure clock runs out inside it sends what would have crossed until then, and the abort
        at the failure time."""
        task, start, rate = stage.task, stage.start, queue.rate_Bps
        nbytes = max(int(round(task.size_bytes)), 1)
        ref = dict(episode=task.episode, slot=task.slot, source=task.source)
        link.send_payload(wire.PayloadBegin(**ref, size_bytes=nbytes, task_size_bytes=task.size_bytes,
                                            cycles=task.cycles, deadline_s=task.deadline_s, due=task.due,
                                            exec_fail_clock=task.exec_fail_clock, tx_start=start))
        total = min(nbytes, int((stage.fail_at - start) * rate)) if stage.fails else nbytes
        sent = 0
        while sent < total:
            size = min(SHAPED_CHUNK_BYTES, total - sent)
            link.send_payload(wire.Chunk(**ref), self._payload[:size])
            await link.drain_payload()
            sent += size
        if stage.fails:
            await sleep_until(self.clock, stage.fail_at)
            link.send_payload(wire.PayloadAbort(**ref))
            return False
        link.send_payload(wire.PayloadEnd(**ref))
        await sleep_until(self.clock, start + stage.stage_s - 2 * SHAPED_POLL_S)
        while link.payload_in_flight():
            await asyncio.sleep(SHAPED_POLL_S)
        self.sent.append((task.size_bytes, rate, self.clock.now() - start))
        return True

    # ------------------------------------------------------------------ incoming connections
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = await wire.accept(reader, writer, self.settings.key, self.settings.max_frame_bytes,
                                     self.reject)
        if accepted is None:
            return
        conn, hello = accepted
        where = conn.peer
        if (hello.role not in ("peer", "probe", "payload") or hello.node is None
                or (self.n and hello.node >= self.n)):
            self.reject(where, wire.UnexpectedMessage(f"role {hello.role!r} / node {hello.node} is not a peer"))
            conn.close()
            return
        j = hello.node
        if hello.role == "peer":
            self.incoming_conns[j] = conn
        bad = 0
        try:
            while True:
                try:
                    msg, body = await conn.recv()
                    if hello.role in ("peer", "payload"):
                        self._on_peer_data(j, msg, body)
                    elif isinstance(msg, wire.Probe):
                        if self.network is not None:
                            conn.send(self._probe_answer(msg.id))
                    else:
                        raise wire.UnexpectedMessage(f"{msg.type} on a probe link")
                except (wire.MalformedMessage, wire.UnexpectedMessage) as exc:
                    self.reject(f"node {j} ({where})", exc)
                    bad += 1
                    if bad > MAX_BAD_FRAMES:
                        break
        except (wire.FrameTooLarge, wire.AuthError) as exc:
            self.reject(f"node {j} ({where})", exc)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except Exception as exc:  # a bug must not take the node down: log it loudly, drop the link
            self.rejected["internal_error"] += 1
            log.exception("internal error on the link from node %d: %s", j, exc)
        finally:
            conn.close()
            if hello.role == "peer" and self.incoming_conns.get(j) is conn:
                del self.incoming_conns[j]
                self.receiving.forget(j)

    def _on_peer_data(self, j: int, msg, body) -> None:
        """A message of a data or payload link from j."""
        if isinstance(msg, wire.Overload):
            if self.n:
                self.peer_overloaded[j] = msg.flag
            return
        begin = self.receiving.receive(j, msg, body, self.episode)
        if begin is not None:
            self._arrived(j, begin)

    def _arrived(self, j: int, begin: wire.PayloadBegin) -> None:
        """A payload arrived whole: the task joins this node's execution queue."""
        now = self.clock.now()
        task = Task(episode=begin.episode, slot=begin.slot, source=begin.source,
                    size_bytes=begin.task_size_bytes, cycles=begin.cycles, deadline_s=begin.deadline_s,
                    due=begin.due, tx_fail_clock=0.0, exec_fail_clock=begin.exec_fail_clock,
                    dest=self.index, tx_start=begin.tx_start, tx_end=now, exec_arrive=now)
        rate = float(self.network.link_rate_Bps[j, self.index])
        self.transfers.append((begin.task_size_bytes, rate, now - begin.tx_start))
        self.report(wire.TaskEvent(episode=task.episode, slot=task.slot, source=task.source,
                                   dest=self.index, kind="arrived", tx_start=task.tx_start,
                                   tx_end=now, exec_arrive=now))
        self._enqueue_exec(task)
