"""How one edge node is started: where the controller is, the shared key, where peers reach the
node, and how long it keeps trying to reach the controller."""

from __future__ import annotations

from dataclasses import dataclass

from o2o.testbed import wire

MAX_BAD_FRAMES = 16             # authenticated-but-invalid frames tolerated per connection
CONNECT_TIMEOUT_S = 3.0
# The IP TOS byte of payload connections (DSCP CS1, "lower effort", RFC 8622): with kernel
# shaping, the sender's qdisc shapes the packets that carry it and leaves everything else alone.
PAYLOAD_TOS = 0x20


@dataclass
class NodeSettings:
    controller_host: str
    controller_port: int
    key: bytes
    index: int | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    advertise_host: str | None = None
    max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES
    connect_wait_s: float = 30.0      # how long to keep trying to reach the controller at start
    controller_grace_s: float = 10.0  # how long to try to get it back once connected
