"""Node i's links to its peers (the links e_ij of paper III-A, over TCP).

For each alive peer j, node i holds two outgoing connections: the **data link** (announcements,
payloads and overload flags, in FIFO order, one-way) and the **probe link** (request and
answer). ``PeerLinks`` opens them when the controller names j alive, closes them when it does
not any more, and opens them again after a break while j is still alive.

When the kernel shapes the links (``NodeRuntime.pacing == "kernel"``), payloads travel on a third
connection, the **payload link**, marked with ``PAYLOAD_TOS`` so that only they meet the shaper:
written at full speed, a payload would otherwise hold up the announcements and flags queued
behind it on the data link. The sender learns that a payload has crossed from its own kernel:
``payload_in_flight`` is what the peer's TCP has not acknowledged yet.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import termios
from typing import Callable

from o2o.testbed import wire
from o2o.testbed.node.settings import CONNECT_TIMEOUT_S, PAYLOAD_TOS

log = logging.getLogger("o2o.testbed.node")

CONNECT_ATTEMPTS = 20
RECONNECT_DELAY_S = 0.1     # a link that just broke: do not hammer the peer


class PeerLink:
    """Node ``me``'s two outgoing connections to peer ``peer``."""

    def __init__(self, owner: "PeerLinks", peer: int, host: str, port: int):
        self.owner, self.peer, self.host, self.port = owner, peer, host, port
        self.data: wire.FramedConnection | None = None
        self.probe_conn: wire.FramedConnection | None = None
        self.payload_conn: wire.FramedConnection | None = None
        self._futures: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self._tasks: list[asyncio.Task] = []
        self.connecting: asyncio.Task | None = None
        self.closed = False

    @property
    def up(self) -> bool:
        conns = [self.data, self.probe_conn] + ([self.payload_conn] if self.owner.payload_links else [])
        return not self.closed and all(c is not None and not c.closed for c in conns)

    async def connect(self) -> None:
        o = self.owner
        data = await wire.open_connection(self.host, self.port, o.key, "peer", o.me, o.max_frame_bytes,
                                          CONNECT_TIMEOUT_S)
        probe = await wire.open_connection(self.host, self.port, o.key, "probe", o.me, o.max_frame_bytes,
                                           CONNECT_TIMEOUT_S)
        payload = None
        if o.payload_links:
            payload = await wire.open_connection(self.host, self.port, o.key, "payload", o.me,
                                                 o.max_frame_bytes, CONNECT_TIMEOUT_S)
            sock = payload.writer.get_extra_info("socket")
            if sock is not None and sock.family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, PAYLOAD_TOS)
        if self.closed:
            for conn in (data, probe, payload):
                if conn is not None:
                    conn.close()
            return
        self.data, self.probe_conn, self.payload_conn = data, probe, payload
        self._tasks = [asyncio.create_task(self._watch_data()), asyncio.create_task(self._read_probes())]
        if payload is not None:
            self._tasks.append(asyncio.create_task(self._watch(payload)))
        # Tell the new peer our current flag (it assumes False).
        if o.overloaded():
            data.send(wire.Overload(flag=True))

    async def _watch_data(self) -> None:
        await self._watch(self.data)

    async def _watch(self, conn: wire.FramedConnection) -> None:
        """Data and payload links are one-way; reading only detects that the peer went away."""
        try:
            while True:
                await conn.recv()
        except (asyncio.IncompleteReadError, ConnectionError, wire.ProtocolError, OSError):
            pass
        self._lost()

    async def _read_probes(self) -> None:
        conn = self.probe_conn
        try:
            while True:
                msg, _ = await conn.recv()
                if isinstance(msg, wire.ProbeAnswer):
                    fut = self._futures.pop(msg.id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        except (asyncio.IncompleteReadError, ConnectionError, wire.ProtocolError, OSError):
            pass
        self._lost()

    def _lost(self) -> None:
        if self.closed:
            return
        self.close()
        self.owner.lost(self)

    def send(self, msg, body: bytes | memoryview = b"") -> None:
        if not self.up:
            raise ConnectionResetError(f"no data link to node {self.peer}")
        self.data.send(msg, body)

    def try_send(self, msg) -> None:
        """Send if the link is up; a message that cannot go is given up (the peer is away)."""
        if self.up:
            try:
                self.send(msg)
            except ConnectionError:
                pass

    async def drain(self) -> None:
        if self.data is not None:
            await self.data.drain()

    def send_payload(self, msg, body: bytes | memoryview = b"") -> None:
        """A payload frame: on the payload link when there is one, else on the data link."""
        if not self.up:
            raise ConnectionResetError(f"no payload link to node {self.peer}")
        (self.payload_conn or self.data).send(msg, body)

    async def drain_payload(self) -> None:
        conn = self.payload_conn or self.data
        if conn is not None:
            await conn.drain()

    def payload_in_flight(self) -> int:
        """Bytes written to the payload link that the peer's TCP has not acknowledged yet: still
        in this process's buffer, or in the kernel's send queue (``TIOCOUTQ``: unsent plus sent
        but unacknowledged). 0 once everything has reached the peer's host."""
        conn = self.payload_conn
        if conn is None or conn.closed or not self.up:
            raise ConnectionResetError(f"no payload link to node {self.peer}")
        queued = conn.writer.transport.get_write_buffer_size()
        sock = conn.writer.get_extra_info("socket")
        unacked = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        return queued + unacked

    async def probe(self, timeout_s: float) -> wire.ProbeAnswer | None:
        """A real probe request; None when the peer does not answer in time."""
        if not self.up:
            return None
        self._next_id += 1
        pid = self._next_id
        fut = asyncio.get_running_loop().create_future()
        self._futures[pid] = fut
        try:
            self.probe_conn.send(wire.Probe(id=pid))
            return await asyncio.wait_for(fut, timeout_s)
        except (asyncio.TimeoutError, ConnectionError):
            return None
        finally:
            self._futures.pop(pid, None)

    def close(self) -> None:
        self.closed = True
        for conn in (self.data, self.probe_conn, self.payload_conn):
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


class PeerLinks:
    """Node ``me``'s links to the peers the controller names alive.

    ``on_lost(j)`` is called when the links to j break or j leaves (the tasks queued towards j
    then fail in transmission); ``overloaded()`` is this node's current overload flag, told to
    a peer when a link to it opens."""

    def __init__(self, key: bytes, on_lost: Callable[[int], None], overloaded: Callable[[], bool]):
        self.key = key
        self.me: int | None = None
        self.max_frame_bytes = wire.DEFAULT_MAX_FRAME_BYTES
        self.on_lost, self.overloaded = on_lost, overloaded
        self.payload_links = False      # kernel-shaped links: payloads on a connection of their own
        self.addresses: dict[int, tuple[str, int]] = {}
        self.alive: set[int] = set()
        self.links: dict[int, PeerLink] = {}

    def get(self, j: int) -> PeerLink | None:
        return self.links.get(j)

    def up(self) -> list[PeerLink]:
        return [link for link in self.links.values() if link.up]

    def down(self) -> list[int]:
        """Alive peers without a working link."""
        return [j for j in sorted(self.alive)
                if j != self.me and not (j in self.links and self.links[j].up)]

    def set_peers(self, peers: list[wire.PeerAddress], alive: list[int], n: int) -> None:
        """The controller's peer list: close links to peers that left or moved, open the missing ones."""
        self.addresses = {p.node: (p.host, p.port) for p in peers if p.node < n}
        self.alive = {j for j in alive if j < n}
        for j in list(self.links):
            link = self.links[j]
            if j not in self.alive or self.addresses.get(j) != (link.host, link.port):
                link.close()
                del self.links[j]
                self.lost(link)
        for j in sorted(self.alive):
            if j != self.me and j not in self.links and j in self.addresses:
                host, port = self.addresses[j]
                self._open(j, host, port)

    def _open(self, j: int, host: str, port: int, delay_s: float = 0.0) -> None:
        link = PeerLink(self, j, host, port)
        self.links[j] = link
        link.connecting = asyncio.create_task(self._connect(link, delay_s))

    async def _connect(self, link: PeerLink, delay_s: float = 0.0) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                await link.connect()
                return
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, wire.ProtocolError) as exc:
                if link.closed:
                    return
                if attempt == CONNECT_ATTEMPTS - 1:
                    log.warning("cannot connect to node %d at %s:%d: %s", link.peer, link.host, link.port, exc)
                await asyncio.sleep(0.05 * (attempt + 1))

    def lost(self, link: PeerLink) -> None:
        """The links to peer j broke (or j left): report it, and while the controller still
        names j alive, open them again."""
        if self.links.get(link.peer) is link:
            del self.links[link.peer]
        self.on_lost(link.peer)
        if link.peer in self.alive and link.peer not in self.links and link.peer != self.me:
            host, port = self.addresses.get(link.peer, (link.host, link.port))
            self._open(link.peer, host, port, delay_s=RECONNECT_DELAY_S)

    async def wait_connecting(self, timeout_s: float) -> None:
        """Give the links being opened up to ``timeout_s`` each to come up."""
        for link in list(self.links.values()):
            if link.connecting is not None and not link.connecting.done():
                try:
                    await asyncio.wait_for(asyncio.shield(link.connecting), timeout_s)
                except asyncio.TimeoutError:
                    pass

    def broadcast(self, msg) -> None:
        """Send to every peer with a working link (the overload flag)."""
        for link in list(self.links.values()):
            link.try_send(msg)

    def close(self) -> None:
        for link in list(self.links.values()):
            link.close()
