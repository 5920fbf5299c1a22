"""The testbed controller (paper VI-A, "Control Layer").

It takes no offloading decision. It keeps:

* the **registry**: nodes connect, authenticate, sync their clock and register; the controller
  pushes the configuration (scenario, network, peers' addresses, runtime settings). A node is
  *joining* until the next episode boundary, then *active*, and *dead* once it is lost: its
  connection closed (a killed process) or no message for ``heartbeat_timeout_s`` (a frozen or
  partitioned one; nodes send a heartbeat every ``heartbeat_s``). A restarted node registers
  again under its index and rejoins at the next episode;
* the **slot clock**: slot t starts at ``epoch + t * slot_s`` on the controller clock, each
  boundary awaited as an absolute deadline (``timing.sleep_until``), its lateness recorded;
* the **end devices**: at each boundary every active node gets its slot message, with the task
  drawn for it (``o2o.core.episodes``: Bernoulli arrivals, sizes, cycles, deadlines, failure
  clocks and the scheduler's uniforms from the episode seed) or none;
* **episodes**: prepare (links up, model loaded, rule built: every node answers ``ready``),
  start, T slots, drain until every task has an outcome, end; the task events are collected by
  an ``EpisodeRecorder`` and come out as an ``EpisodeLog`` for the task-log store;
* **models**: ``announce_model`` tells every node that a version is in the store; nodes load it
  (checksum verified) at the next prepare and report the version they run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from o2o.core.episodes import sample_episodes
from o2o.core.errors import UserError
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.logs.records import EpisodeLog
from o2o.testbed import wire
from o2o.testbed.recorder import EpisodeRecorder
from o2o.testbed.timing import Clock, sleep_until

log = logging.getLogger("o2o.testbed.controller")

MAX_BAD_FRAMES = 16


@dataclass
class ControllerSettings:
    key: bytes
    host: str = "127.0.0.1"
    port: int = 0
    runtime: wire.NodeRuntime = field(default_factory=wire.NodeRuntime)
    heartbeat_timeout_s: float = 1.0
    start_lead_s: float = 0.3       # episode_start is sent this long before slot 0
    slot_spin_s: float = 0.002      # the slot clock polls the last 2 ms before a boundary
    drain_grace_s: float = 2.0      # after the last deadline, wait this long for reports
    ready_timeout_s: float = 30.0


@dataclass
class NodeHandle:
    index: int
    conn: wire.FramedConnection
    host: str
    port: int
    pid: int
    state: str = "joining"          # joining | active | dead
    last_seen: float = 0.0
    ready: dict[int, wire.Ready] = field(default_factory=dict)
    stats: dict[int, wire.EpisodeStats] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    bad: int = 0


@dataclass
class EpisodeResult:
    """One testbed episode: its log, its metrics and the measurements of the run."""

    index: int
    seed: int
    scheduler: str
    log: EpisodeLog
    metrics: dict
    clock_lateness_s: list[float]       # controller: each slot boundary's lateness
    delivery_lateness_s: list[float]    # nodes: slot message received - boundary
    transfers: list[tuple[float, float, float]]   # (s bytes, r_ij B/s, measured seconds) at receivers
    sent: list[tuple[float, float, float]]        # the same at the senders (see EpisodeStats.sent)
    decision_latency_s: list[float]     # decision reported - task arrival (boundary)
    deaths: list[dict]
    gave_up: int                        # tasks settled by the drain timeout (should be 0)
    rejected: dict[int, dict[str, int]]


class Controller:
    def __init__(self, scenario: Scenario, network: Network, settings: ControllerSettings):
        if network.n != scenario.nodes:
            raise ValueError(f"network has {network.n} nodes, the scenario {scenario.nodes}")
        self.scenario, self.network, self.settings = scenario, network, settings
        self.clock = Clock()
        self.nodes: dict[int, NodeHandle] = {}
        self.recorder: EpisodeRecorder | None = None
        self.episode: int | None = None
        self.model: wire.ModelAvailable | None = None
        self.rejected_connections: dict[str, int] = {}
        self._round = 0
        self._server = wire.FramedServer(self._on_connection)
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        s = self.settings
        self.port = await self._server.start(s.host, s.port, "controller")
        self._spawn(self._monitor_heartbeats())
        log.info("controller listening on %s:%d", s.host, self.port)
        return self.port

    async def close(self, reason: str = "done", timeout_s: float = 3.0, shutdown_nodes: bool = True) -> None:
        """Tell every node to shut down (unless ``shutdown_nodes`` is False: they then wait for
        the next controller), wait a little for them to hang up, stop serving."""
        self._closing = True
        for h in self.nodes.values():
            if h.state != "dead" and shutdown_nodes:
                try:
                    h.conn.send(wire.Shutdown(reason=reason))
                except ConnectionError:
                    pass
        deadline = self.clock.now() + (timeout_s if shutdown_nodes else 0.0)
        while any(not h.conn.closed for h in self.nodes.values()) and self.clock.now() < deadline:
            await asyncio.sleep(0.02)
        for h in self.nodes.values():
            h.conn.close()
        await self._server.close()
        for t in list(self._tasks):
            t.cancel()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def active(self) -> list[int]:
        return sorted(i for i, h in self.nodes.items() if h.state == "active")

    def live(self) -> list[int]:
        return sorted(i for i, h in self.nodes.items() if h.state != "dead")

    async def wait_for_nodes(self, count: int, timeout_s: float) -> None:
        """Until ``count`` nodes are registered (alive)."""
        deadline = self.clock.now() + timeout_s
        while len(self.live()) < count:
            if self.clock.now() > deadline:
                raise UserError(f"only {len(self.live())} of {count} nodes registered within "
                                f"{timeout_s:.0f} s (nodes {self.live()}); check the node logs")
            await asyncio.sleep(0.02)

    async def wait_dead(self, k: int, timeout_s: float = 10.0) -> bool:
        deadline = self.clock.now() + timeout_s
        while self.clock.now() < deadline:
            h = self.nodes.get(k)
            if h is None or h.state == "dead":
                return True
            await asyncio.sleep(0.01)
        return False

    # ------------------------------------------------------------------ connections
    async def _on_connection(self, reader, writer) -> None:
        accepted = await wire.accept(reader, writer, self.settings.key,
                                     self.settings.runtime.max_frame_bytes, self._reject_connection)
        if accepted is None:
            return
        conn, hello = accepted
        where = conn.peer
        try:
            if hello.role == "node":
                await self._serve_node(conn, where)
            elif hello.role == "admin":
                await self._serve_admin(conn, where)
            else:
                self._reject_connection(where, wire.UnexpectedMessage(f"role {hello.role!r} at the controller"))
        except wire.ProtocolError as exc:
            self._reject_connection(where, exc)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.TimeoutError):
            pass
        except Exception:  # a bug must not stop the controller: log it loudly
            log.exception("internal error on the connection from %s", where)
        finally:
            conn.close()

    def _reject_connection(self, where: str, exc: BaseException) -> None:
        reason = getattr(exc, "reason", type(exc).__name__)
        self.rejected_connections[reason] = self.rejected_connections.get(reason, 0) + 1
        log.warning("rejected connection from %s (%s): %s", where, reason, exc)

    async def _serve_admin(self, conn: wire.FramedConnection, where: str) -> None:
        """A trainer announcing a published model."""
        while True:
            try:
                msg, _ = await conn.recv()
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return
            except wire.ProtocolError as exc:
                self._reject_connection(where, exc)
                return
            if isinstance(msg, wire.ModelAvailable):
                await self.announce_model(msg.store, msg.version, msg.sha256)
                conn.send(wire.Ready(round=0, model_version=msg.version, model_sha256=msg.sha256))
            else:
                self._reject_connection(where, wire.UnexpectedMessage(f"{msg.type} from an admin"))

    async def _serve_node(self, conn: wire.FramedConnection, where: str) -> None:
        # Before registering, a node may only sync its clock.
        while True:
            msg, _ = await asyncio.wait_for(conn.recv(), wire.HANDSHAKE_TIMEOUT_S)
            if isinstance(msg, wire.TimeRequest):
                conn.send(wire.TimeReply(id=msg.id, t_node=msg.t_node, t_ctrl=self.clock.now()))
                continue
            if isinstance(msg, wire.Register):
                break
            self._reject_connection(where, wire.UnexpectedMessage(f"{msg.type} before register"))
            return
        handle = self._register(conn, msg)
        if handle is None:
            return
        try:
            while True:
                try:
                    msg, _ = await conn.recv()
                except wire.MalformedMessage as exc:
                    self._node_rejected(handle, exc)
                    if handle.bad > MAX_BAD_FRAMES:
                        break
                    continue
                handle.last_seen = self.clock.now()
                try:
                    self._on_node_message(handle, msg)
                except wire.ProtocolError as exc:
                    self._node_rejected(handle, exc)
                    if handle.bad > MAX_BAD_FRAMES:
                        break
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except (wire.FrameTooLarge, wire.AuthError) as exc:
            self._node_rejected(handle, exc)
        self._lost(handle, "connection closed")

    def _node_rejected(self, handle: NodeHandle, exc: wire.ProtocolError) -> None:
        handle.bad += 1
        log.warning("rejected message from node %d (%s): %s", handle.index, exc.reason, exc)

    def _register(self, conn: wire.FramedConnection, msg: wire.Register) -> NodeHandle | None:
        n = self.network.n
        index = msg.node
        if index is None:
            free = [i for i in range(n) if i not in self.nodes or self.nodes[i].state == "dead"]
            if not free:
                conn.send(wire.Reject(reason=f"all {n} node indices are taken"))
                return None
            index = free[0]
        elif index >= n:
            conn.send(wire.Reject(reason=f"node index {index} is out of range: the scenario has {n} nodes"))
            return None
        elif index in self.nodes and self.nodes[index].state != "dead":
            conn.send(wire.Reject(reason=f"node {index} is registered and alive; retry after it is "
                                      "declared dead"))
            return None
        handle = NodeHandle(index=index, conn=conn, host=msg.host, port=msg.port, pid=msg.pid,
                            last_seen=self.clock.now())
        self.nodes[index] = handle
        conn.send(wire.Config(node=index, scenario=self.scenario.model_dump(mode="json"),
                           network=self.network.to_dict(), peers=self._addresses(),
                           alive=self.active(), runtime=self.settings.runtime))
        if self.model is not None:
            conn.send(self.model)
        log.info("node %d registered from %s:%d (pid %d)", index, msg.host, msg.port, msg.pid)
        return handle

    def _addresses(self) -> list[wire.PeerAddress]:
        return [wire.PeerAddress(node=i, host=h.host, port=h.port)
                for i, h in sorted(self.nodes.items()) if h.state != "dead"]

    def _broadcast(self, msg, to: list[int] | None = None) -> None:
        for i in (self.live() if to is None else to):
            try:
                self.nodes[i].conn.send(msg)
            except ConnectionError:
                pass

    def _on_node_message(self, h: NodeHandle, msg) -> None:
        if isinstance(msg, wire.Heartbeat):
            h.rejected = dict(msg.rejected)
        elif isinstance(msg, wire.Decision):
            if self.recorder is not None and msg.episode == self.episode and h.state == "active":
                self.recorder.on_decision(h.index, msg)
        elif isinstance(msg, wire.TaskEvent):
            if self.recorder is not None and msg.episode == self.episode and h.state == "active":
                self.recorder.on_event(h.index, msg)
        elif isinstance(msg, wire.Ready):
            h.ready[msg.round] = msg
        elif isinstance(msg, wire.EpisodeStats):
            h.stats[msg.episode] = msg
            h.rejected = dict(msg.rejected)
        elif isinstance(msg, wire.TimeRequest):
            h.conn.send(wire.TimeReply(id=msg.id, t_node=msg.t_node, t_ctrl=self.clock.now()))
        else:
            raise wire.UnexpectedMessage(f"{msg.type} is not a node message")

    def _lost(self, h: NodeHandle, how: str) -> None:
        """Node h is gone: settle the tasks it holds, tell the others."""
        if h.state == "dead":
            return
        was_active = h.state == "active"
        h.state = "dead"
        h.conn.close()
        if self._closing:
            log.info("node %d hung up", h.index)
            return
        now = self.clock.now()
        settled = 0
        if was_active and self.recorder is not None:
            settled = self.recorder.node_died(h.index, now, how)
        log.warning("node %d lost (%s); %d of its tasks end as failures", h.index, how, settled)
        self._broadcast(wire.Peers(peers=self._addresses(), alive=self.active()))

    async def _monitor_heartbeats(self) -> None:
        timeout = self.settings.heartbeat_timeout_s
        period = min(self.settings.runtime.heartbeat_s, timeout / 4)
        last = self.clock.now()
        while True:
            await asyncio.sleep(period)
            now = self.clock.now()
            if now - last > timeout / 2:
                # This loop itself was held up: the silence may be ours, not the nodes'.
                for h in self.nodes.values():
                    h.last_seen = max(h.last_seen, now)
            last = now
            for h in list(self.nodes.values()):
                if h.state != "dead" and now - h.last_seen > timeout:
                    self._lost(h, "heartbeat timeout")

    # ------------------------------------------------------------------ episodes
    async def announce_model(self, store: str, version: int, sha256: str) -> None:
        """A new model version is in the store; nodes load it at the next prepare."""
        self.model = wire.ModelAvailable(store=store, version=version, sha256=sha256)
        self._broadcast(self.model)
        log.info("announced model version %d from %s", version, store)

    async def prepare(self, scheduler: str, attempts: int = 3,
                      params: dict[str, float] | None = None) -> dict[int, wire.Ready]:
        """Promote joining nodes, share the peer list, and have every active node get ready
        with ``scheduler`` (at ``params``, a tunable rule's values; None: its defaults).
        A round in which a node died (its peers then lack a link to it) is repeated."""
        for attempt in range(attempts):
            before = self.active()
            try:
                return await self._prepare_round(scheduler, params)
            except UserError:
                if attempt == attempts - 1 or set(self.active()) == set(before):
                    raise
                log.warning("a node was lost while preparing; preparing again")
        raise AssertionError("unreachable")

    async def _prepare_round(self, scheduler: str, params: dict[str, float] | None = None
                             ) -> dict[int, wire.Ready]:
        for h in self.nodes.values():
            if h.state == "joining":
                h.state = "active"
        self._round += 1
        rnd = self._round
        active = self.active()
        self._broadcast(wire.Peers(peers=self._addresses(), alive=active))
        self._broadcast(wire.Prepare(round=rnd, scheduler=scheduler, params=params), to=active)
        deadline = self.clock.now() + self.settings.ready_timeout_s
        while True:
            waiting = [i for i in self.active() if rnd not in self.nodes[i].ready]
            if not waiting:
                break
            if self.clock.now() > deadline:
                raise UserError(f"node(s) {waiting} did not get ready within "
                                f"{self.settings.ready_timeout_s:.0f} s; check their logs")
            await asyncio.sleep(0.01)
        readies = {i: self.nodes[i].ready[rnd] for i in self.active()}
        errors = [r.error for r in readies.values() if r.error]
        if errors:
            raise UserError("nodes cannot run the episode: " + "; ".join(errors))
        if self.model is not None and scheduler == "drl":
            stale = [i for i, r in readies.items() if r.model_version != self.model.version]
            if stale:
                raise UserError(f"node(s) {stale} did not load model version {self.model.version}")
        return readies

    def _slot_messages(self, index: int, episodes) -> list[list[wire.Slot]]:
        """Every slot message of the episode, built (and validated) before the clock starts."""
        ep, msgs = episodes, []
        for t in range(self.scenario.slots):
            row = []
            for i in range(self.network.n):
                task = None
                if ep.has_task[0, t, i]:
                    task = wire.TaskSpec(
                        size_bytes=float(ep.size_bytes[0, t, i]), cycles=float(ep.cycles[0, t, i]),
                        deadline_s=float(ep.deadline_s[0, t, i]),
                        tx_fail_clock=float(ep.tx_fail_clock[0, t, i]),
                        exec_fail_clock=float(ep.exec_fail_clock[0, t, i]),
                        sched_u=[float(u) for u in ep.sched_u[0, t, i]])
                row.append(wire.Slot(episode=index, slot=t, task=task))
            msgs.append(row)
        return msgs

    async def run_episode(self, index: int, seed: int, scheduler: str, on_slot=None) -> EpisodeResult:
        """Run one episode on the active nodes (call ``prepare`` first). ``on_slot(index, t)``
        is called at each boundary before the slot's tasks go out (fault injection)."""
        sc, n = self.scenario, self.network.n
        episodes = sample_episodes(sc, self.network, [seed])
        messages = self._slot_messages(index, episodes)
        epoch = self.clock.now() + self.settings.start_lead_s
        recorder = EpisodeRecorder(sc, self.network, episodes, index, epoch)
        self.recorder, self.episode = recorder, index
        self._broadcast(wire.EpisodeStart(episode=index, seed=int(seed), epoch=epoch, scheduler=scheduler),
                        to=self.active())
        lateness: list[float] = []
        for t in range(sc.slots):
            boundary = epoch + t * sc.slot_s
            lateness.append(await sleep_until(self.clock, boundary, self.settings.slot_spin_s))
            if on_slot is not None:
                on_slot(index, t)
            for i in range(n):
                h = self.nodes.get(i)
                if h is None or h.state != "active":
                    recorder.node_absent(t, i, boundary)
                    continue
                try:
                    h.conn.send(messages[t][i])
                except ConnectionError:
                    pass   # the reader sees the closed connection and settles its tasks
        await sleep_until(self.clock, epoch + sc.slots * sc.slot_s, self.settings.slot_spin_s)
        self._broadcast(wire.Slot(episode=index, slot=sc.slots), to=self.active())
        # Drain: every task ends by its deadline; give the reports a grace period.
        wait_s = recorder.latest_due + self.settings.drain_grace_s - self.clock.now()
        try:
            await asyncio.wait_for(recorder.complete.wait(), max(wait_s, 0.0))
        except asyncio.TimeoutError:
            stuck = recorder.give_up(self.clock.now())
            log.error("episode %d: %d task(s) had no outcome %.1f s after the last deadline; "
                      "counted as failures", index, stuck, self.settings.drain_grace_s)
        # The final observation (slot T) may still be on its way from some node.
        await self._wait(lambda: all(recorder.observed[sc.slots, i] for i in self.active()), 1.0)
        ending = self.active()
        self._broadcast(wire.EpisodeEnd(episode=index), to=ending)
        await self._wait(lambda: all(index in self.nodes[i].stats for i in self.active()), 2.0)
        self.recorder, self.episode = None, None
        stats = [self.nodes[i].stats.pop(index) for i in ending if index in self.nodes[i].stats]
        return EpisodeResult(
            index=index, seed=int(seed), scheduler=scheduler, log=recorder.to_log(),
            metrics=recorder.metrics(), clock_lateness_s=lateness,
            delivery_lateness_s=[x for s in stats for x in s.slot_lateness_s],
            transfers=[tuple(x) for s in stats for x in s.transfers],
            sent=[tuple(x) for s in stats for x in s.sent],
            decision_latency_s=recorder.decision_latency_s, deaths=recorder.deaths,
            gave_up=recorder.gave_up,
            rejected={i: dict(h.rejected) for i, h in self.nodes.items() if h.rejected})

    async def _wait(self, done, timeout_s: float) -> bool:
        deadline = self.clock.now() + timeout_s
        while not done():
            if self.clock.now() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True


async def notify_controller(host: str, port: int, key: bytes, store: str, version: int, sha256: str,
                            timeout_s: float = 10.0) -> None:
    """Tell a running controller (admin connection) that model ``version`` is in ``store``."""
    try:
        conn = await wire.open_connection(host, port, key, "admin", None, wire.DEFAULT_MAX_FRAME_BYTES)
    except (OSError, asyncio.TimeoutError, wire.ProtocolError, asyncio.IncompleteReadError) as exc:
        raise UserError(f"cannot reach the controller at {host}:{port}: {exc}") from None
    try:
        conn.send(wire.ModelAvailable(store=store, version=version, sha256=sha256))
        msg, _ = await asyncio.wait_for(conn.recv(), timeout_s)
        if not isinstance(msg, wire.Ready) or msg.model_version != version:
            raise UserError(f"the controller did not acknowledge model version {version}")
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, wire.ProtocolError) as exc:
        raise UserError(f"the controller at {host}:{port} did not take the announcement: {exc}") from None
    finally:
        conn.close()
