"""The receiving side of one edge node as plain state: what arrives on the data links from its
peers (no sockets, no asyncio).

A node keeps N-1 receiving queues (paper III-A, Fig. 1); their lengths l^r_ij are part of its
observation (paper IV-B). Here the receiving queue from peer j holds the tasks j announced (they
joined j's send queue towards this node) that have not arrived or left yet. A payload arrives
whole (``payload_end`` after all its bytes), and the task then joins this node's execution queue;
a payload cut by a link failure (``payload_abort``) or a task dropped at the head of j's send
queue (``cancel``) leaves the receiving queue without arriving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from o2o.testbed import wire

DATA_MESSAGES = (wire.Announce, wire.PayloadBegin, wire.Chunk, wire.PayloadEnd, wire.PayloadAbort,
                 wire.Cancel)


@dataclass
class Incoming:
    """A payload being received: its ``payload_begin`` and the bytes that came so far."""

    begin: wire.PayloadBegin
    received: int = 0


class ReceivingQueues:
    """Node i's receiving queues for one episode (``n`` nodes; 0 before the configuration)."""

    def __init__(self, n: int):
        self.recv_len = np.zeros(n, dtype=np.int64)          # l^r_ij for each sender j
        self.announced: set[tuple[int, int, int]] = set()
        self.incoming: dict[tuple[int, int, int], Incoming] = {}
        # Tasks that left (arrived, aborted, cancelled). With payloads on a link of their own
        # (kernel shaping) a task's announcement may come after its payload: it is then ignored.
        self.left: set[tuple[int, int, int]] = set()

    def receive(self, j: int, msg, body, episode: int | None) -> wire.PayloadBegin | None:
        """One message of the data link from node j during ``episode`` (None: between episodes);
        the ``payload_begin`` of a task whose payload just arrived whole (it joins the execution
        queue), else None. Raises
        ``wire.UnexpectedMessage`` or ``wire.MalformedMessage`` for what cannot be true."""
        if not isinstance(msg, DATA_MESSAGES):
            raise wire.UnexpectedMessage(f"{msg.type} on a data link")
        if msg.source != j:
            raise wire.UnexpectedMessage(f"node {j} sent data of a task of node {msg.source}")
        if msg.episode != episode:
            return None  # a straggler of another episode
        if not isinstance(msg, wire.Chunk) and body:
            raise wire.MalformedMessage(f"{msg.type} carries {len(body)} unexpected bytes")
        key = (msg.episode, msg.slot, msg.source)
        if isinstance(msg, wire.Announce):
            if key not in self.announced and key not in self.left:
                self.announced.add(key)
                self.recv_len[j] += 1
        elif isinstance(msg, wire.PayloadBegin):
            self.incoming[key] = Incoming(msg)
        elif isinstance(msg, wire.Chunk):
            inc = self.incoming.get(key)
            if inc is None:
                raise wire.UnexpectedMessage(f"chunk of task {key} without payload_begin")
            inc.received += len(body)
            if inc.received > inc.begin.size_bytes:
                del self.incoming[key]
                self._leave(key, j)
                raise wire.MalformedMessage(f"task {key}: more payload than its {inc.begin.size_bytes} bytes")
        elif isinstance(msg, wire.PayloadEnd):
            inc = self.incoming.pop(key, None)
            if inc is None:
                raise wire.UnexpectedMessage(f"payload_end of task {key} without payload_begin")
            self._leave(key, j)
            if inc.received != inc.begin.size_bytes:
                raise wire.MalformedMessage(f"task {key}: {inc.received} of {inc.begin.size_bytes} bytes arrived")
            return inc.begin
        else:  # abort or cancel
            self.incoming.pop(key, None)
            self._leave(key, j)
        return None

    def _leave(self, key, j: int) -> None:
        self.left.add(key)
        if key in self.announced:
            self.announced.discard(key)
            self.recv_len[j] -= 1

    def forget(self, j: int) -> None:
        """The data link from j is gone: nothing more will arrive from it (j reports its tasks,
        or the controller settles them when j died)."""
        for key in [k for k in self.announced if k[2] == j]:
            self.announced.discard(key)
        for key in [k for k in self.incoming if k[2] == j]:
            del self.incoming[key]
        if j < self.recv_len.size:
            self.recv_len[j] = 0
