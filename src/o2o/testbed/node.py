"""An edge node of the testbed: one OS process, one asyncio event loop (SPEC sections 2, 3, 7).

What runs inside (paper VI-A, "Execution Layer"):

* a **TCP server** that accepts the data links and probe links of its peers (and rejects
  anything that does not authenticate, see ``protocol``);
* the **execution queue**: FIFO, one task at a time at the node's full capacity F_j. By default
  execution is emulated (the node is busy for c/F_j seconds, waiting on an absolute deadline);
  ``exec_mode = "compute"`` burns real CPU work instead (SHA-256 over a buffer, as much as this
  host does in c/F_j seconds, times ``compute_scale``), so contention between nodes is real;
* one FIFO **send queue and one data connection per peer**: each task's real payload (s bytes)
  goes over TCP in chunks, each chunk released when its last byte would have crossed a link of
  rate r_ij, so the whole payload arrives s/r_ij after the transfer starts;
* the **drop and failure rules** of SPEC section 2: a task is dropped at the head of a send
  queue when ``now + T^t + T^c > a + d`` and at the head of the execution queue when
  ``now + T^c > a + d``; a transfer fails (is cut) at ``tx_fail_clock / beta_ij`` after it
  started and an execution at ``exec_fail_clock / alpha_j``, with the episode's own Exp(1)
  clocks of ``o2o.core.episodes`` carried by the task, so the same tasks fail as in the simulator;
* **probes** answered from live state: capacity, alpha, execution backlog in seconds (nominal:
  what remains of the running task plus the waiting ones) and the 1-bit overload flag;
* the **scheduler** (``o2o.schedulers``): at each slot the node builds a batch-of-one
  ``NodeView`` from its live state, sends real probe requests to the nodes the rule names, and
  lets the rule choose. The rule code is the simulator's; nothing is written twice.

The overload flag is also pushed to every peer when it flips (1 bit on the data link), so a
node knows every peer's flag for the action mask (SPEC section 4) without probing everyone;
probe answers refresh it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import math
import os
import signal
import socket
import sys
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from o2o.core.errors import UserError
from o2o.core.network import Network
from o2o.core.scenario import Scenario, scenario_from_dict
from o2o.schedulers.base import NodeView, ProbeAnswers

# The backlog a node logs for a peer that did not answer its probe (seen as infinite): any
# value above twice the largest deadline is clipped to the same observation.
PROBE_BACKLOG_CAP_S = 1e9
from o2o.schedulers.heuristics import Rule
from o2o.testbed import protocol as P
from o2o.testbed.timing import Clock, sleep_until

log = logging.getLogger("o2o.testbed.node")

MAX_BAD_FRAMES = 16             # authenticated-but-invalid frames tolerated per connection
CLOCK_SYNC_ROUNDS = 8
PAYLOAD_BUFFER_BYTES = 256 * 1024
MIN_CHUNK_BYTES = 16 * 1024
MAX_CHUNK_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 3.0
LAST_CHUNK_SPIN_S = 0.001


@dataclass
class Task:
    """One task as a node holds it. Times are on the controller clock."""

    episode: int
    slot: int
    source: int
    size_bytes: float
    cycles: float
    deadline_s: float
    due: float                   # a + d
    tx_fail_clock: float
    exec_fail_clock: float
    dest: int = -1
    tx_start: float | None = None
    tx_end: float | None = None
    exec_arrive: float | None = None
    exec_start: float | None = None
    exec_s: float = 0.0          # nominal c / F_j at the executing node

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.episode, self.slot, self.source)


@dataclass
class Incoming:
    begin: P.PayloadBegin
    received: int = 0


@dataclass
class NodeSettings:
    controller_host: str
    controller_port: int
    key: bytes
    index: int | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    advertise_host: str | None = None
    max_frame_bytes: int = P.DEFAULT_MAX_FRAME_BYTES
    connect_wait_s: float = 30.0      # how long to keep trying to reach the controller at start
    controller_grace_s: float = 10.0  # how long to try to get it back once connected


# ------------------------------------------------------------------------------ real compute
_BURN_BLOCK = bytes(64 * 1024)


def burn_rate_Bps(seconds: float = 0.05) -> float:
    """Bytes of SHA-256 this host does per second on one thread (the unit of real work)."""
    h = hashlib.sha256()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        h.update(_BURN_BLOCK)
        done += len(_BURN_BLOCK)
    return done / (time.perf_counter() - start)


def burn(nbytes: float, stop_at_local: float) -> bool:
    """Hash ``nbytes`` of zeros; stop early at ``stop_at_local`` (time.monotonic). True when done."""
    h = hashlib.sha256()
    done = 0.0
    while done < nbytes:
        if time.monotonic() >= stop_at_local:
            return False
        h.update(_BURN_BLOCK)
        done += len(_BURN_BLOCK)
    return True


# ------------------------------------------------------------------------------ peer links
class PeerLink:
    """Node i's two outgoing connections to peer j: the data link (announcements, payloads and
    overload flags, in FIFO order) and the probe link (request / answer)."""

    def __init__(self, node: "EdgeNode", peer: int, host: str, port: int):
        self.node, self.peer, self.host, self.port = node, peer, host, port
        self.data: P.FramedConnection | None = None
        self.probe_conn: P.FramedConnection | None = None
        self._futures: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._tasks: list[asyncio.Task] = []
        self.connecting: asyncio.Task | None = None
        self.closed = False

    @property
    def up(self) -> bool:
        return (not self.closed and self.data is not None and not self.data.closed
                and self.probe_conn is not None and not self.probe_conn.closed)

    async def connect(self) -> None:
        s = self.node.settings
        me = self.node.index
        data = await P.open_connection(self.host, self.port, s.key, "peer", me, s.max_frame_bytes,
                                       CONNECT_TIMEOUT_S)
        probe = await P.open_connection(self.host, self.port, s.key, "probe", me, s.max_frame_bytes,
                                        CONNECT_TIMEOUT_S)
        if self.closed:
            data.close()
            probe.close()
            return
        self.data, self.probe_conn = data, probe
        self._tasks = [asyncio.create_task(self._watch_data()), asyncio.create_task(self._read_probes())]
        # Tell the new peer our current flag (it assumes False).
        if self.node.overloaded:
            data.send(P.Overload(flag=True))

    async def _watch_data(self) -> None:
        """The data link is one-way; reading only detects that the peer went away."""
        conn = self.data
        try:
            while True:
                await conn.recv()
        except (asyncio.IncompleteReadError, ConnectionError, P.ProtocolError, OSError):
            pass
        self._lost()

    async def _read_probes(self) -> None:
        conn = self.probe_conn
        try:
            while True:
                msg, _ = await conn.recv()
                if isinstance(msg, P.ProbeAnswer):
                    fut = self._futures.pop(msg.id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        except (asyncio.IncompleteReadError, ConnectionError, P.ProtocolError, OSError):
            pass
        self._lost()

    def _lost(self) -> None:
        if self.closed:
            return
        self.close()
        self.node.link_lost(self)

    def send(self, msg, body: bytes | memoryview = b"") -> None:
        if not self.up:
            raise ConnectionResetError(f"no data link to node {self.peer}")
        self.data.send(msg, body)

    async def drain(self) -> None:
        if self.data is not None:
            await self.data.drain()

    async def probe(self, timeout_s: float) -> P.ProbeAnswer | None:
        """A real probe request; None when the peer does not answer in time."""
        if not self.up:
            return None
        self._next_id += 1
        pid = self._next_id
        fut = asyncio.get_running_loop().create_future()
        self._futures[pid] = fut
        try:
            self.probe_conn.send(P.Probe(id=pid))
            return await asyncio.wait_for(fut, timeout_s)
        except (asyncio.TimeoutError, ConnectionError):
            return None
        finally:
            self._futures.pop(pid, None)

    def close(self) -> None:
        self.closed = True
        for conn in (self.data, self.probe_conn):
            if conn is not None:
                conn.close()
        for fut in self._futures.values():
            if not fut.done():
                fut.set_result(None)
        self._futures.clear()
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        if self.connecting is not None and self.connecting is not current:
            self.connecting.cancel()


# ------------------------------------------------------------------------------ the node
class EdgeNode:
    def __init__(self, settings: NodeSettings):
        self.settings = settings
        self.index: int | None = settings.index
        self.clock = Clock()
        self.rejected: Counter = Counter()
        self.ctrl: P.FramedConnection | None = None
        self.outbox: list = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._stop = asyncio.Event()
        self._exit_code = 0
        self._background: set[asyncio.Task] = set()
        # Set by the configuration.
        self.scenario: Scenario | None = None
        self.network: Network | None = None
        self.runtime = P.NodeRuntime()
        self.addresses: dict[int, tuple[str, int]] = {}
        self.alive: set[int] = set()
        self.links: dict[int, PeerLink] = {}
        self.incoming_conns: dict[int, P.FramedConnection] = {}
        # Scheduling.
        self.rule: Rule | None = None
        self.scheduler_name: str | None = None
        self.model = None
        self.model_version: int | None = None
        self.model_sha256: str | None = None
        self.pending_model: P.ModelAvailable | None = None
        self.model_error: str | None = None
        # Episode state.
        self.episode: int | None = None
        self.epoch = 0.0
        self.workers: list[asyncio.Task] = []
        self._reset_state(0)
        self._burn_Bps = 0.0
        self._cpu: ThreadPoolExecutor | None = None
        self._payload = memoryview(os.urandom(PAYLOAD_BUFFER_BYTES))

    # ------------------------------------------------------------------ state
    def _reset_state(self, n: int) -> None:
        self.exec_queue: deque[Task] = deque()
        self.running: Task | None = None
        self._exec_wake = asyncio.Event()
        self.send_queues: dict[int, deque[Task]] = {j: deque() for j in range(n)}
        self.sending: dict[int, Task | None] = {j: None for j in range(n)}
        self._send_wake: dict[int, asyncio.Event] = {j: asyncio.Event() for j in range(n)}
        self.recv_len = np.zeros(n, dtype=np.int64)
        self.announced: set[tuple[int, int, int]] = set()
        self.incoming: dict[tuple[int, int, int], Incoming] = {}
        self.peer_overloaded = np.zeros(n, dtype=bool)
        self.overloaded = False
        self.slot_lateness: list[float] = []
        self.transfers: list[tuple[float, float, float]] = []
        self.sent: list[tuple[float, float, float]] = []

    @property
    def n(self) -> int:
        return self.network.n if self.network is not None else 0

    @property
    def exec_wait(self) -> int:
        return len(self.exec_queue)

    @property
    def exec_len(self) -> int:
        return len(self.exec_queue) + (self.running is not None)

    def exec_backlog_s(self, now: float) -> float:
        """Nominal remaining work: the running task's rest plus every waiting task's c / F."""
        backlog = sum(t.cycles for t in self.exec_queue) / self.capacity_hz
        if self.running is not None:
            backlog += max(self.running.exec_start + self.running.exec_s - now, 0.0)
        return backlog

    def send_backlog_s(self, now: float) -> np.ndarray:
        """(N,) remaining nominal transmission work queued on each outgoing link."""
        out = np.zeros(self.n)
        rates = self.network.link_rate_Bps[self.index]
        for j, queue in self.send_queues.items():
            total = sum(t.size_bytes for t in queue) / rates[j]
            current = self.sending.get(j)
            if current is not None and current.tx_start is not None:
                total += max(current.tx_start + current.size_bytes / rates[j] - now, 0.0)
            out[j] = total
        return out

    @property
    def capacity_hz(self) -> float:
        return float(self.network.capacity_hz[self.index])

    def _update_overload(self) -> None:
        """Recompute the 1-bit flag; push it to every peer when it flips."""
        flag = bool(self.exec_wait > self.network.overload_threshold[self.index])
        if flag == self.overloaded:
            return
        self.overloaded = flag
        self.peer_overloaded[self.index] = flag
        for link in self.links.values():
            if link.up:
                try:
                    link.send(P.Overload(flag=flag))
                except ConnectionError:
                    pass

    # ------------------------------------------------------------------ reporting
    def report(self, msg) -> None:
        """Send a message to the controller; kept for later if the controller is away."""
        if self.ctrl is not None and not self.ctrl.closed:
            try:
                self.ctrl.send(msg)
                return
            except ConnectionError:
                pass
        self.outbox.append(msg)

    def _end(self, task: Task, outcome: str, at: float) -> None:
        self.report(P.TaskEvent(
            episode=task.episode, slot=task.slot, source=task.source, dest=task.dest, kind="end",
            outcome=outcome, tx_start=task.tx_start, tx_end=task.tx_end,
            exec_arrive=task.exec_arrive, exec_start=task.exec_start, end_at=at))

    def reject(self, where: str, exc: BaseException) -> None:
        reason = getattr(exc, "reason", type(exc).__name__)
        self.rejected[reason] += 1
        log.warning("rejected message from %s (%s): %s", where, reason, exc)

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> int:
        s = self.settings
        try:
            self.server = await asyncio.start_server(self._on_connection, s.listen_host, s.listen_port,
                                                     limit=P.STREAM_LIMIT_BYTES)
        except OSError as exc:
            raise UserError(f"node cannot listen on {s.listen_host}:{s.listen_port}: {exc.strerror}") from None
        self.port = self.server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        heartbeat = asyncio.create_task(self._heartbeats())
        session = asyncio.create_task(self._controller_sessions())
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({session, stop}, return_when=asyncio.FIRST_COMPLETED)
            if session.done() and not session.cancelled() and session.exception() is not None:
                raise session.exception()
        finally:
            for t in (heartbeat, session, stop, *self.workers):
                t.cancel()
            for link in list(self.links.values()):
                link.close()
            if self.ctrl is not None:
                self.ctrl.close()
            self.server.close()
            if self._cpu is not None:
                self._cpu.shutdown(wait=False, cancel_futures=True)
        return self._exit_code

    async def _controller_sessions(self) -> None:
        """Connect, register, serve; on a lost controller, try again for a grace period."""
        s = self.settings
        give_up_at = time.monotonic() + (s.connect_wait_s if s.connect_wait_s > 0 else math.inf)
        while not self._stop.is_set():
            try:
                conn = await P.open_connection(s.controller_host, s.controller_port, s.key, "node",
                                               self.index, s.max_frame_bytes, CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, P.ProtocolError) as exc:
                if time.monotonic() > give_up_at:
                    log.error("controller %s:%s unreachable: %s", s.controller_host, s.controller_port, exc)
                    self._exit_code = 1
                    return
                await asyncio.sleep(0.2)
                continue
            try:
                registered = await self._register(conn)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, P.ProtocolError) as exc:
                log.warning("registration failed: %s", exc)
                conn.close()
                registered = None
            if registered is None:
                if self._exit_code or time.monotonic() > give_up_at:
                    self._exit_code = self._exit_code or 1
                    return
                await asyncio.sleep(0.3)
                continue
            await self._serve_controller(conn)
            if self._stop.is_set():
                return
            log.warning("lost the controller; reconnecting for up to %.0f s", s.controller_grace_s)
            give_up_at = time.monotonic() + s.controller_grace_s

    async def _register(self, conn: P.FramedConnection):
        """Clock sync, then ``register``; returns the configuration, or None (rejected)."""
        best = None
        for k in range(CLOCK_SYNC_ROUNDS):
            t0 = time.monotonic()
            conn.send(P.TimeRequest(id=k, t_node=t0))
            msg, _ = await asyncio.wait_for(conn.recv(), CONNECT_TIMEOUT_S)
            t1 = time.monotonic()
            if not isinstance(msg, P.TimeReply) or msg.id != k:
                raise P.UnexpectedMessage(f"expected time_reply {k}, got {msg.type}")
            rtt = t1 - t0
            if best is None or rtt < best[0]:
                best = (rtt, msg.t_ctrl - (t0 + t1) / 2)
        self.clock.offset_s = best[1]
        host = self.settings.advertise_host or _default_advertise(self.settings.listen_host)
        conn.send(P.Register(node=self.index, host=host, port=self.port, pid=os.getpid()))
        msg, _ = await asyncio.wait_for(conn.recv(), CONNECT_TIMEOUT_S)
        if isinstance(msg, P.Reject):
            log.error("the controller refused this node: %s", msg.reason)
            if "retry" not in msg.reason:
                self._exit_code = 2
            conn.close()
            return None
        if not isinstance(msg, P.Config):
            raise P.UnexpectedMessage(f"expected config, got {msg.type}")
        self._configure(msg)
        self.ctrl = conn
        log.info("registered as node %d (clock offset %.6f s, rtt %.6f s)", self.index,
                 self.clock.offset_s, best[0])
        outbox, self.outbox = self.outbox, []
        for m in outbox:
            self.report(m)
        return msg

    def _configure(self, msg: P.Config) -> None:
        scenario = scenario_from_dict(msg.scenario)
        network = Network.from_dict(msg.network)
        if network.n != scenario.nodes or not 0 <= msg.node < network.n:
            raise P.MalformedMessage("configuration: network, scenario and node index disagree")
        first = self.network is None or network.n != self.n
        self.scenario, self.network, self.index = scenario, network, msg.node
        self.runtime = msg.runtime
        self.settings.max_frame_bytes = msg.runtime.max_frame_bytes
        if first:
            self._reset_state(network.n)
        if self.runtime.exec_mode == "compute" and not self._burn_Bps:
            self._burn_Bps = burn_rate_Bps()
            self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpu")
            log.info("real-compute mode: %.0f MB/s of SHA-256 per thread, scale %g",
                     self._burn_Bps / 1e6, self.runtime.compute_scale)
        self._set_peers(msg.peers, msg.alive)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.runtime.heartbeat_s)
            if self.ctrl is not None and not self.ctrl.closed:
                try:
                    self.ctrl.send(P.Heartbeat(rejected=dict(self.rejected)))
                except ConnectionError:
                    pass

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
    async def _serve_controller(self, conn: P.FramedConnection) -> None:
        bad = 0
        while True:
            try:
                msg, _ = await conn.recv()
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                break
            except (P.FrameTooLarge, P.AuthError) as exc:
                self.reject("controller", exc)
                break
            except P.MalformedMessage as exc:
                self.reject("controller", exc)
                bad += 1
                if bad > MAX_BAD_FRAMES:
                    break
                continue
            try:
                if await self._on_controller_message(msg):
                    self._stop.set()
                    break
            except P.ProtocolError as exc:
                self.reject("controller", exc)
        conn.close()
        self.ctrl = None

    async def _on_controller_message(self, msg) -> bool:
        """Handle one message; True means shut down."""
        if isinstance(msg, P.Slot):
            if msg.episode == self.episode:
                self._spawn(self._on_slot(msg))
        elif isinstance(msg, P.Peers):
            self._set_peers(msg.peers, msg.alive)
        elif isinstance(msg, P.Prepare):
            self._spawn(self._prepare(msg))
        elif isinstance(msg, P.EpisodeStart):
            self._start_episode(msg)
        elif isinstance(msg, P.EpisodeEnd):
            self._end_episode(msg)
        elif isinstance(msg, P.ModelAvailable):
            self.pending_model = msg
        elif isinstance(msg, P.TimeReply):
            pass
        elif isinstance(msg, P.Shutdown):
            log.info("shutdown requested by the controller: %s", msg.reason or "done")
            return True
        elif isinstance(msg, P.Config):
            self._configure(msg)
        else:
            raise P.UnexpectedMessage(f"{msg.type} is not a controller message")
        return False

    def _set_peers(self, peers: list[P.PeerAddress], alive: list[int]) -> None:
        n = self.n
        self.addresses = {p.node: (p.host, p.port) for p in peers if p.node < n}
        self.alive = {j for j in alive if j < n}
        for j in list(self.links):
            link = self.links[j]
            if j not in self.alive or self.addresses.get(j) != (link.host, link.port):
                link.close()
                del self.links[j]
                self.link_lost(link)
        for j in sorted(self.alive):
            if j != self.index and j not in self.links and j in self.addresses:
                host, port = self.addresses[j]
                link = PeerLink(self, j, host, port)
                self.links[j] = link
                link.connecting = asyncio.create_task(self._connect(link))

    async def _connect(self, link: PeerLink, delay_s: float = 0.0) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)   # a link that just broke: do not hammer the peer
        for attempt in range(20):
            try:
                await link.connect()
                return
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, P.ProtocolError) as exc:
                if link.closed:
                    return
                if attempt == 19:
                    log.warning("cannot connect to node %d at %s:%d: %s", link.peer, link.host, link.port, exc)
                await asyncio.sleep(0.05 * (attempt + 1))

    def link_lost(self, link: PeerLink) -> None:
        """The links to peer j broke (or j left): tasks queued towards it fail in transmission."""
        if self.links.get(link.peer) is link:
            del self.links[link.peer]
        queue = self.send_queues.get(link.peer)
        if queue:
            now = self.clock.now()
            while queue:
                task = queue.popleft()
                task.tx_start = task.tx_start if task.tx_start is not None else now
                self._end(task, "TRANSMISSION_FAILURE", now)
        if (link.peer in self.alive and link.peer not in self.links and link.peer != self.index
                and self.network is not None):
            # Still alive for the controller: try to get the link back.
            host, port = self.addresses.get(link.peer, (link.host, link.port))
            fresh = PeerLink(self, link.peer, host, port)
            self.links[link.peer] = fresh
            fresh.connecting = asyncio.create_task(self._connect(fresh, delay_s=0.1))

    async def _prepare(self, msg: P.Prepare) -> None:
        """Between episodes: links up, pending model loaded, rule built; then ``ready``."""
        for link in list(self.links.values()):
            if link.connecting is not None and not link.connecting.done():
                try:
                    await asyncio.wait_for(asyncio.shield(link.connecting), CONNECT_TIMEOUT_S * 2)
                except asyncio.TimeoutError:
                    pass
        error = None
        if self.pending_model is not None:
            error = await self._load_model(self.pending_model)
            self.pending_model = None
        if error is None:
            error = self._build_rule(msg.scheduler)
        down = [j for j in sorted(self.alive) if j != self.index and not (j in self.links and self.links[j].up)]
        if error is None and down:
            error = f"node {self.index} has no link to node(s) {down}"
        self.report(P.Ready(round=msg.round, model_version=self.model_version,
                            model_sha256=self.model_sha256, error=error))

    async def _load_model(self, ann: P.ModelAvailable) -> str | None:
        """Load version ``ann.version`` from the store, checksum verified; an error message or None."""
        from o2o.models import ModelError, ModelStore

        def load():
            store = ModelStore(ann.store)
            model = store.load(ann.version, nodes=self.n)
            if model.manifest["sha256"] != ann.sha256:
                raise ModelError(f"model version {ann.version} in {ann.store} has checksum "
                                 f"{model.manifest['sha256'][:12]}..., the controller announced "
                                 f"{ann.sha256[:12]}...")
            return model

        try:
            model = await asyncio.to_thread(load)
        except (ModelError, OSError, ValueError) as exc:
            log.error("cannot load model version %d: %s", ann.version, exc)
            return f"node {self.index}: {exc}"
        self.model, self.model_version, self.model_sha256 = model, ann.version, ann.sha256
        self.rule = None
        self.scheduler_name = None
        log.info("loaded model version %d from %s", ann.version, ann.store)
        return None

    def _build_rule(self, name: str) -> str | None:
        from o2o.schedulers import HEURISTICS

        if name == self.scheduler_name and self.rule is not None:
            return None
        if name in HEURISTICS:
            self.rule = HEURISTICS[name]()
        elif name == "drl":
            if self.model is None:
                return f"node {self.index}: scheduler drl needs a model, none was announced"
            from o2o.schedulers.drl import DRLRule

            self.rule = DRLRule.from_model(self.model, self.scenario, self.network)
        else:
            return f"node {self.index}: unknown scheduler {name!r}"
        self.scheduler_name = name
        return None

    def _start_episode(self, msg: P.EpisodeStart) -> None:
        if self.rule is None or msg.scheduler != self.scheduler_name:
            error = self._build_rule(msg.scheduler)
            if error is not None:
                raise P.UnexpectedMessage(error)
        for t in self.workers:
            t.cancel()
        self._reset_state(self.n)
        self.episode, self.epoch = msg.episode, msg.epoch
        self.workers = [asyncio.create_task(self._executor())]
        self.workers += [asyncio.create_task(self._sender(j)) for j in range(self.n) if j != self.index]

    def _end_episode(self, msg: P.EpisodeEnd) -> None:
        if msg.episode != self.episode:
            return
        for t in self.workers:
            t.cancel()
        self.workers = []
        self.report(P.EpisodeStats(episode=msg.episode, slot_lateness_s=self.slot_lateness,
                                   transfers=self.transfers, sent=self.sent, rejected=dict(self.rejected)))
        self.episode = None

    # ------------------------------------------------------------------ deciding
    async def _on_slot(self, msg: P.Slot) -> None:
        """Slot boundary: observe, and with a task probe, choose and dispatch (SPEC 2.1-2.3)."""
        received_at = self.clock.now()
        self.slot_lateness.append(received_at - (self.epoch + msg.slot * self.scenario.slot_s))
        i, n = self.index, self.n
        exec_len = self.exec_len
        recv_len = self.recv_len.copy()
        if msg.task is None:
            self.report(P.Decision(
                episode=msg.episode, slot=msg.slot, node=i, has_task=False, action=n,
                exec_len=exec_len, recv_len=recv_len.tolist(),
                peer_overloaded=self.peer_overloaded.tolist(), received_at=received_at,
                decided_at=received_at))
            return
        spec = msg.task
        arrive_at = self.epoch + msg.slot * self.scenario.slot_s
        task = Task(episode=msg.episode, slot=msg.slot, source=i, size_bytes=spec.size_bytes,
                    cycles=spec.cycles, deadline_s=spec.deadline_s, due=arrive_at + spec.deadline_s,
                    tx_fail_clock=spec.tx_fail_clock, exec_fail_clock=spec.exec_fail_clock)
        net = self.network
        view = NodeView(
            n=n, node=np.array([i]), size_bytes=np.array([spec.size_bytes]),
            cycles=np.array([spec.cycles]),
            # What is left of the deadline now (a few ms less than d: delivery and decision).
            deadline_s=np.array([task.due - received_at]),
            exec_len=np.array([exec_len]), exec_wait=np.array([self.exec_wait]),
            overload_threshold=net.overload_threshold[[i]], recv_len=recv_len[None, :],
            link_rate_Bps=net.link_rate_Bps[[i]], link_fail_rate=net.link_fail_rate[[i]],
            send_backlog_s=self.send_backlog_s(received_at)[None, :],
            u=np.array([spec.sched_u]))
        targets = np.flatnonzero(self.rule.probe_targets(view)[0])
        probes = await self._probe(targets)
        dest = int(self.rule.choose(view, probes)[0])
        prob = self.rule.action_prob(view, np.array([dest]))
        decided_at = self.clock.now()
        # What it learned by probing (observation v2): the probed backlogs (an unreachable
        # peer's infinite one capped at PROBE_BACKLOG_CAP_S, which the observation clips the
        # same way) and its own; None for the peers it did not probe.
        probed = set(targets.tolist()) | {i}
        backlog = [min(float(probes.exec_backlog_s[0, j]), PROBE_BACKLOG_CAP_S) if j in probed else None
                   for j in range(n)]
        if i not in targets:
            backlog[i] = self.exec_backlog_s(received_at)
        self.report(P.Decision(
            episode=msg.episode, slot=msg.slot, node=i, has_task=True, action=dest,
            action_prob=None if prob is None or not np.isfinite(prob[0]) else float(prob[0]),
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
            self.send_queues[dest].append(task)
            link = self.links.get(dest)
            if link is not None and link.up:
                try:
                    link.send(P.Announce(episode=task.episode, slot=task.slot, source=i))
                except ConnectionError:
                    pass
            self._send_wake[dest].set()

    async def _probe(self, targets: np.ndarray) -> ProbeAnswers:
        """Real probe requests to ``targets`` (own state for itself), concurrently. A peer that
        is down or does not answer within the probe timeout looks unreachable: infinite
        backlog, overloaded."""
        n, net, i = self.n, self.network, self.index
        answers = ProbeAnswers(
            capacity_hz=net.capacity_hz[None, :].copy(), node_fail_rate=net.node_fail_rate[None, :].copy(),
            exec_backlog_s=np.zeros((1, n)), overloaded=np.zeros((1, n), dtype=bool))
        peers = [int(j) for j in targets if j != i]
        replies = await asyncio.gather(*(self._probe_one(j) for j in peers))
        for j, ans in zip(peers, replies):
            if ans is None:
                answers.exec_backlog_s[0, j] = math.inf
                answers.overloaded[0, j] = True
            else:
                answers.capacity_hz[0, j] = ans.capacity_hz
                answers.node_fail_rate[0, j] = ans.node_fail_rate
                answers.exec_backlog_s[0, j] = ans.exec_backlog_s
                answers.overloaded[0, j] = ans.overloaded
                self.peer_overloaded[j] = ans.overloaded
        if i in targets:
            own = self._probe_answer(0)
            answers.exec_backlog_s[0, i] = own.exec_backlog_s
            answers.overloaded[0, i] = own.overloaded
        return answers

    async def _probe_one(self, j: int) -> P.ProbeAnswer | None:
        link = self.links.get(j)
        if link is None or j not in self.alive:
            return None
        return await link.probe(self.runtime.probe_timeout_s)

    def _probe_answer(self, pid: int) -> P.ProbeAnswer:
        return P.ProbeAnswer(
            id=pid, capacity_hz=self.capacity_hz,
            node_fail_rate=float(self.network.node_fail_rate[self.index]),
            exec_backlog_s=self.exec_backlog_s(self.clock.now()), overloaded=self.overloaded,
            exec_len=self.exec_len)

    # ------------------------------------------------------------------ executing
    def _enqueue_exec(self, task: Task) -> None:
        self.exec_queue.append(task)
        self._update_overload()
        self._exec_wake.set()

    async def _executor(self) -> None:
        """The FIFO execution queue at full capacity (SPEC 2.4-2.7)."""
        alpha = float(self.network.node_fail_rate[self.index])
        while True:
            while not self.exec_queue:
                self._exec_wake.clear()
                await self._exec_wake.wait()
            task = self.exec_queue.popleft()
            now = self.clock.now()
            task.exec_s = task.cycles / self.capacity_hz
            task.exec_start = now
            if now + task.exec_s > task.due:          # SPEC 2.5: cannot make it -> drop now
                self._update_overload()
                self._end(task, "DROP", now)
                continue
            fail_after = task.exec_fail_clock / alpha if alpha > 0 else math.inf
            self.running = task
            self._update_overload()
            try:
                outcome, at = await self._execute(task, now, fail_after)
            finally:
                self.running = None
            self._end(task, outcome, at)

    async def _execute(self, task: Task, start: float, fail_after: float) -> tuple[str, float]:
        if self.runtime.exec_mode == "emulated":
            if fail_after < task.exec_s:             # SPEC 2.6: the CPU fails the task mid-way
                await sleep_until(self.clock, start + fail_after)
                return "EXECUTION_FAILURE", self.clock.now()
            await sleep_until(self.clock, start + task.exec_s)
            return "SUCCESS", self.clock.now()
        # Real compute: as much hashing as this host does in c/F_j seconds, scaled; a real run
        # can be slowed by contention, so it is stopped at the failure time or the deadline.
        work = self._burn_Bps * task.exec_s * self.runtime.compute_scale
        stop_at = min(start + fail_after, task.due)
        done = await asyncio.get_running_loop().run_in_executor(
            self._cpu, burn, work, self.clock.to_local(stop_at))
        now = self.clock.now()
        if done:
            return "SUCCESS", now
        if start + fail_after <= task.due:
            return "EXECUTION_FAILURE", now
        return "DROP", now

    # ------------------------------------------------------------------ sending
    async def _sender(self, j: int) -> None:
        """Send queue i -> j: one task at a time at rate r_ij (SPEC 2.3, 2.5, 2.6)."""
        queue, wake = self.send_queues[j], self._send_wake[j]
        rate = float(self.network.link_rate_Bps[self.index, j])
        beta = float(self.network.link_fail_rate[self.index, j])
        capacity_j = float(self.network.capacity_hz[j])
        while True:
            while not queue:
                wake.clear()
                await wake.wait()
            task = queue.popleft()
            now = self.clock.now()
            task.tx_start = now
            tx_s = task.size_bytes / rate
            link = self.links.get(j)
            if now + tx_s + task.cycles / capacity_j > task.due:   # SPEC 2.5
                if link is not None and link.up:
                    try:
                        link.send(P.Cancel(episode=task.episode, slot=task.slot, source=task.source))
                    except ConnectionError:
                        pass
                self._end(task, "DROP", now)
                continue
            if link is None or not link.up:
                self._end(task, "TRANSMISSION_FAILURE", now)
                continue
            fail_after = task.tx_fail_clock / beta if beta > 0 else math.inf
            self.sending[j] = task
            try:
                outcome = await self._transfer(link, task, now, tx_s, rate, fail_after)
            except ConnectionError:
                outcome = "TRANSMISSION_FAILURE"
            finally:
                self.sending[j] = None
            if outcome is not None:
                self._end(task, outcome, self.clock.now())

    async def _transfer(self, link: PeerLink, task: Task, start: float, tx_s: float, rate: float,
                        fail_after: float) -> str | None:
        """Stream the payload paced at ``rate``; the link fails at ``start + fail_after`` if that
        falls inside the transfer. Returns the outcome when the task ended here (None: it
        reached the destination, which reports from now on)."""
        nbytes = max(int(round(task.size_bytes)), 1)
        ref = dict(episode=task.episode, slot=task.slot, source=task.source)
        link.send(P.PayloadBegin(**ref, size_bytes=nbytes, task_size_bytes=task.size_bytes,
                                 cycles=task.cycles, deadline_s=task.deadline_s, due=task.due,
                                 exec_fail_clock=task.exec_fail_clock, tx_start=start))
        chunk = int(min(max(rate * self.runtime.chunk_s, MIN_CHUNK_BYTES), MAX_CHUNK_BYTES))
        fail_at = start + fail_after if fail_after < tx_s else math.inf
        sent = 0
        while sent < nbytes:
            size = min(chunk, nbytes - sent, PAYLOAD_BUFFER_BYTES)
            # Release the chunk when its last byte would have crossed a link of rate r_ij.
            release_at = start + (sent + size) / nbytes * tx_s
            if fail_at < release_at:
                await sleep_until(self.clock, fail_at)
                link.send(P.PayloadAbort(**ref))
                return "TRANSMISSION_FAILURE"
            last = sent + size >= nbytes
            # The last chunk decides when the payload is complete: poll its final millisecond.
            await sleep_until(self.clock, release_at, LAST_CHUNK_SPIN_S if last else 0.0)
            link.send(P.Chunk(**ref), self._payload[:size])
            await link.drain()
            sent += size
        link.send(P.PayloadEnd(**ref))
        self.sent.append((task.size_bytes, rate, self.clock.now() - start))
        return None

    # ------------------------------------------------------------------ incoming connections
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        where = _peer_of(writer)
        try:
            conn, hello = await P.server_handshake(reader, writer, self.settings.key,
                                                   self.settings.max_frame_bytes)
        except (P.ProtocolError, asyncio.TimeoutError) as exc:
            self.reject(where, exc)
            writer.close()
            return
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            writer.close()
            return
        if hello.role not in ("peer", "probe") or hello.node is None or (self.n and hello.node >= self.n):
            self.reject(where, P.UnexpectedMessage(f"role {hello.role!r} / node {hello.node} is not a peer"))
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
                    if hello.role == "peer":
                        self._on_peer_data(j, msg, body)
                    elif isinstance(msg, P.Probe):
                        if self.network is not None:
                            conn.send(self._probe_answer(msg.id))
                    else:
                        raise P.UnexpectedMessage(f"{msg.type} on a probe link")
                except (P.MalformedMessage, P.UnexpectedMessage) as exc:
                    self.reject(f"node {j} ({where})", exc)
                    bad += 1
                    if bad > MAX_BAD_FRAMES:
                        break
        except (P.FrameTooLarge, P.AuthError) as exc:
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
                self._forget_incoming(j)

    def _forget_incoming(self, j: int) -> None:
        """The data link from j is gone: nothing more will arrive from it (j reports, or the
        controller settles j's tasks when j died)."""
        for key in [k for k in self.announced if k[2] == j]:
            self.announced.discard(key)
        for key in [k for k in self.incoming if k[2] == j]:
            del self.incoming[key]
        if self.n:
            self.recv_len[j] = 0

    def _on_peer_data(self, j: int, msg, body) -> None:
        if isinstance(msg, P.Overload):
            if self.n:
                self.peer_overloaded[j] = msg.flag
            return
        if not isinstance(msg, (P.Announce, P.PayloadBegin, P.Chunk, P.PayloadEnd, P.PayloadAbort, P.Cancel)):
            raise P.UnexpectedMessage(f"{msg.type} on a data link")
        if msg.source != j:
            raise P.UnexpectedMessage(f"node {j} sent data of a task of node {msg.source}")
        if msg.episode != self.episode:
            return  # a straggler of another episode
        if not isinstance(msg, P.Chunk) and body:
            raise P.MalformedMessage(f"{msg.type} carries {len(body)} unexpected bytes")
        key = (msg.episode, msg.slot, msg.source)
        if isinstance(msg, P.Announce):
            if key not in self.announced:
                self.announced.add(key)
                self.recv_len[j] += 1
        elif isinstance(msg, P.PayloadBegin):
            self.incoming[key] = Incoming(msg)
        elif isinstance(msg, P.Chunk):
            inc = self.incoming.get(key)
            if inc is None:
                raise P.UnexpectedMessage(f"chunk of task {key} without payload_begin")
            inc.received += len(body)
            if inc.received > inc.begin.size_bytes:
                del self.incoming[key]
                self._leave_receiving(key, j)
                raise P.MalformedMessage(f"task {key}: more payload than its {inc.begin.size_bytes} bytes")
        elif isinstance(msg, P.PayloadEnd):
            inc = self.incoming.pop(key, None)
            if inc is None:
                raise P.UnexpectedMessage(f"payload_end of task {key} without payload_begin")
            self._leave_receiving(key, j)
            if inc.received != inc.begin.size_bytes:
                raise P.MalformedMessage(f"task {key}: {inc.received} of {inc.begin.size_bytes} bytes arrived")
            self._arrived(j, inc.begin)
        else:  # abort or cancel
            self.incoming.pop(key, None)
            self._leave_receiving(key, j)

    def _leave_receiving(self, key, j: int) -> None:
        if key in self.announced:
            self.announced.discard(key)
            self.recv_len[j] -= 1

    def _arrived(self, j: int, begin: P.PayloadBegin) -> None:
        """A payload arrived whole: the task joins this node's execution queue (SPEC 2.4)."""
        now = self.clock.now()
        task = Task(episode=begin.episode, slot=begin.slot, source=begin.source,
                    size_bytes=begin.task_size_bytes, cycles=begin.cycles, deadline_s=begin.deadline_s,
                    due=begin.due, tx_fail_clock=0.0, exec_fail_clock=begin.exec_fail_clock,
                    dest=self.index, tx_start=begin.tx_start, tx_end=now, exec_arrive=now)
        rate = float(self.network.link_rate_Bps[j, self.index])
        self.transfers.append((begin.task_size_bytes, rate, now - begin.tx_start))
        self.report(P.TaskEvent(episode=task.episode, slot=task.slot, source=task.source,
                                dest=self.index, kind="arrived", tx_start=task.tx_start,
                                tx_end=now, exec_arrive=now))
        self._enqueue_exec(task)


def _peer_of(writer) -> str:
    info = writer.get_extra_info("peername")
    return f"{info[0]}:{info[1]}" if isinstance(info, tuple) and len(info) >= 2 else "unknown"


def _default_advertise(listen_host: str) -> str:
    if listen_host not in ("0.0.0.0", "::", ""):
        return listen_host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


# ------------------------------------------------------------------------------ command line
def parse_host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"{what} {text!r} must look like HOST:PORT, e.g. 127.0.0.1:7000")
    return host or "0.0.0.0", int(port)


def index_from_hostname(hostname: str | None = None) -> int:
    """The node index of a Kubernetes StatefulSet pod: the ordinal after the last '-'."""
    name = hostname or socket.gethostname()
    tail = name.rsplit("-", 1)[-1]
    if not tail.isdigit():
        raise UserError(f"--index-from-hostname: host name {name!r} does not end in -ORDINAL")
    return int(tail)


def add_node_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controller", required=True, metavar="HOST:PORT", help="the controller's address")
    p.add_argument("--index", type=int, default=None,
                   help="node index j (default: the controller assigns the lowest free one)")
    p.add_argument("--index-from-hostname", action="store_true",
                   help="take the index from the host name's -ORDINAL suffix (Kubernetes StatefulSet)")
    p.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="where peers reach this node (port 0: a free port; default 127.0.0.1:0)")
    p.add_argument("--advertise", default=None, metavar="HOST",
                   help="the address peers should use (default: the listen host, or this host's IP)")
    p.add_argument("--token-file", default=None, help=f"file with the shared token (default: ${P.TOKEN_ENV})")
    p.add_argument("--connect-wait", type=float, default=30.0, metavar="SECONDS",
                   help="keep trying to reach the controller this long at start (default 30; 0: forever)")
    p.add_argument("--controller-grace", type=float, default=10.0, metavar="SECONDS",
                   help="after losing the controller, try to get it back this long (default 10)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def settings_from_args(args) -> NodeSettings:
    host, port = parse_host_port(args.controller, "--controller")
    listen_host, listen_port = parse_host_port(args.listen, "--listen")
    index = args.index
    if args.index_from_hostname:
        index = index_from_hostname()
    if index is not None and index < 0:
        raise UserError(f"--index must be >= 0, got {index}")
    return NodeSettings(controller_host=host, controller_port=port,
                        key=P.token_key(P.read_token(args.token_file)), index=index,
                        listen_host=listen_host, listen_port=listen_port,
                        advertise_host=args.advertise, connect_wait_s=args.connect_wait,
                        controller_grace_s=args.controller_grace)


def run_node(args) -> int:
    settings = settings_from_args(args)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format=f"%(asctime)s node[{settings.index if settings.index is not None else '?'}] "
                               "%(levelname)s %(message)s")
    try:
        return asyncio.run(EdgeNode(settings).run())
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    """``python -m o2o.testbed.node``: the node program without the rest of the CLI's imports."""
    parser = argparse.ArgumentParser(prog="o2o testbed node", description="run one edge node")
    add_node_args(parser)
    args = parser.parse_args(argv)
    try:
        return run_node(args)
    except UserError as exc:
        print(f"o2o: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
