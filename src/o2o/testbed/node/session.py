"""An edge node's session with the controller (the Control Layer of paper VI-A).

The node connects, measures its clock offset, registers (its own index, or the lowest free one
the controller assigns) and receives the configuration; then it serves the controller's
messages and sends a heartbeat every ``heartbeat_s`` (the controller declares a silent node
dead). A lost controller is sought again for a grace period; reports made meanwhile are kept
and sent once it is back. Announced models are loaded from the store, checksum verified.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from typing import Protocol

from o2o.testbed import wire
from o2o.testbed.node.settings import CONNECT_TIMEOUT_S, MAX_BAD_FRAMES, NodeSettings
from o2o.testbed.timing import Clock

log = logging.getLogger("o2o.testbed.node")

CLOCK_SYNC_ROUNDS = 8


class SessionOwner(Protocol):
    """What the session needs of its node."""

    index: int | None
    port: int
    runtime: wire.NodeRuntime

    def configure(self, msg: wire.Config) -> None: ...

    def on_controller_message(self, msg) -> None: ...

    def reject(self, where: str, exc: BaseException) -> None: ...

    def rejected_counts(self) -> dict[str, int]: ...


class ControllerSession:
    def __init__(self, node: SessionOwner, settings: NodeSettings, clock: Clock, stop: asyncio.Event):
        self.node, self.settings, self.clock, self.stop = node, settings, clock, stop
        self.conn: wire.FramedConnection | None = None
        self.outbox: list = []
        self.exit_code = 0

    def report(self, msg) -> None:
        """Send a message to the controller; kept for later if the controller is away."""
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.send(msg)
                return
            except ConnectionError:
                pass
        self.outbox.append(msg)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    async def run(self) -> None:
        """Connect, register, serve; on a lost controller, try again for a grace period."""
        s = self.settings
        give_up_at = time.monotonic() + (s.connect_wait_s if s.connect_wait_s > 0 else math.inf)
        while not self.stop.is_set():
            try:
                conn = await wire.open_connection(s.controller_host, s.controller_port, s.key, "node",
                                                  self.node.index, s.max_frame_bytes, CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, wire.ProtocolError) as exc:
                if time.monotonic() > give_up_at:
                    log.error("controller %s:%s unreachable: %s", s.controller_host, s.controller_port, exc)
                    self.exit_code = 1
                    return
                await asyncio.sleep(0.2)
                continue
            try:
                registered = await self._register(conn)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, wire.ProtocolError) as exc:
                log.warning("registration failed: %s", exc)
                conn.close()
                registered = None
            if registered is None:
                if self.exit_code or time.monotonic() > give_up_at:
                    self.exit_code = self.exit_code or 1
                    return
                await asyncio.sleep(0.3)
                continue
            await self._serve(conn)
            if self.stop.is_set():
                return
            log.warning("lost the controller; reconnecting for up to %.0f s", s.controller_grace_s)
            give_up_at = time.monotonic() + s.controller_grace_s

    async def _register(self, conn: wire.FramedConnection) -> wire.Config | None:
        """Clock sync, then ``register``; returns the configuration, or None (rejected).

        The offset to the controller clock comes from the round trip with the shortest time
        (its error is at most half of it)."""
        best = None
        for k in range(CLOCK_SYNC_ROUNDS):
            t0 = time.monotonic()
            conn.send(wire.TimeRequest(id=k, t_node=t0))
            msg, _ = await asyncio.wait_for(conn.recv(), CONNECT_TIMEOUT_S)
            t1 = time.monotonic()
            if not isinstance(msg, wire.TimeReply) or msg.id != k:
                raise wire.UnexpectedMessage(f"expected time_reply {k}, got {msg.type}")
            rtt = t1 - t0
            if best is None or rtt < best[0]:
                best = (rtt, msg.t_ctrl - (t0 + t1) / 2)
        self.clock.offset_s = best[1]
        host = self.settings.advertise_host or default_advertise(self.settings.listen_host)
        conn.send(wire.Register(node=self.node.index, host=host, port=self.node.port, pid=os.getpid()))
        msg, _ = await asyncio.wait_for(conn.recv(), CONNECT_TIMEOUT_S)
        if isinstance(msg, wire.Reject):
            log.error("the controller refused this node: %s", msg.reason)
            if "retry" not in msg.reason:
                self.exit_code = 2
            conn.close()
            return None
        if not isinstance(msg, wire.Config):
            raise wire.UnexpectedMessage(f"expected config, got {msg.type}")
        self.node.configure(msg)
        self.conn = conn
        log.info("registered as node %d (clock offset %.6f s, rtt %.6f s)", self.node.index,
                 self.clock.offset_s, best[0])
        outbox, self.outbox = self.outbox, []
        for m in outbox:
            self.report(m)
        return msg

    async def _serve(self, conn: wire.FramedConnection) -> None:
        bad = 0
        while True:
            try:
                msg, _ = await conn.recv()
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                break
            except (wire.FrameTooLarge, wire.AuthError) as exc:
                self.node.reject("controller", exc)
                break
            except wire.MalformedMessage as exc:
                self.node.reject("controller", exc)
                bad += 1
                if bad > MAX_BAD_FRAMES:
                    break
                continue
            try:
                if self._on_message(msg):
                    self.stop.set()
                    break
            except wire.ProtocolError as exc:
                self.node.reject("controller", exc)
        conn.close()
        self.conn = None

    def _on_message(self, msg) -> bool:
        """Handle one message; True means shut down."""
        if isinstance(msg, wire.TimeReply):
            return False
        if isinstance(msg, wire.Shutdown):
            log.info("shutdown requested by the controller: %s", msg.reason or "done")
            return True
        if isinstance(msg, wire.Config):
            self.node.configure(msg)
        else:
            self.node.on_controller_message(msg)
        return False

    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.node.runtime.heartbeat_s)
            if self.conn is not None and not self.conn.closed:
                try:
                    self.conn.send(wire.Heartbeat(rejected=self.node.rejected_counts()))
                except ConnectionError:
                    pass


def default_advertise(listen_host: str) -> str:
    """The address peers should use when none is given: the listen host, or this host's IP."""
    if listen_host not in ("0.0.0.0", "::", ""):
        return listen_host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


async def load_announced_model(ann: wire.ModelAvailable, nodes: int):
    """Load version ``ann.version`` from the store, checksum verified; (model, None) or
    (None, what went wrong)."""
    from o2o.models import ModelError, ModelStore

    def load():
        store = ModelStore(ann.store)
        model = store.load(ann.version, nodes=nodes)
        if model.manifest["sha256"] != ann.sha256:
            raise ModelError(f"model version {ann.version} in {ann.store} has checksum "
                             f"{model.manifest['sha256'][:12]}..., the controller announced "
                             f"{ann.sha256[:12]}...")
        return model

    try:
        model = await asyncio.to_thread(load)
    except (ModelError, OSError, ValueError) as exc:
        log.error("cannot load model version %d: %s", ann.version, exc)
        return None, str(exc)
    log.info("loaded model version %d from %s", ann.version, ann.store)
    return model, None
