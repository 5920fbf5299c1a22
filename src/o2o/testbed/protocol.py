"""The testbed's wire format: frames, authentication and message schemas (SPEC section 7).

Frame
    ``length (uint32, big endian) | tag (32 bytes) | header length (uint32) | header | body``

    ``length`` counts everything after itself and is checked against the receiver's limit
    (``max_frame_bytes``) *before* anything is read, so an oversized frame costs nothing.
    ``header`` is one JSON message (schemas below); ``body`` is raw bytes (a payload chunk) or
    empty. ``tag = HMAC-SHA256(key, seq | header length | header | body)`` where ``seq`` is the
    frame's 64-bit sequence number in its direction of the connection (never sent: both ends
    count), so a frame cannot be forged, altered, replayed or reordered without the key.

Handshake (every connection)
    1. the server sends ``challenge`` with a fresh random nonce, tagged with the token key;
    2. the client answers ``hello`` (its role: ``node`` to the controller, ``peer`` data link or
       ``probe`` link between nodes, ``admin``) with its own nonce, tagged with the token key
       over the server's nonce as well;
    3. both derive one key per direction, ``HMAC(token key, "c2s"|"s2c" | nonce_s | nonce_c)``,
       and tag every later frame with it. A wrong token fails at step 1 or 2.

What a receiver does with a bad frame (``FramedConnection.recv`` raises, the caller logs):

* ``FrameTooLarge``: the length exceeds the limit -> the connection is closed (its bytes are
  not read, the stream cannot be trusted);
* ``AuthError``: the tag does not verify -> the connection is closed (the peer does not hold
  the token, or the stream was tampered with);
* ``MalformedMessage``: an authenticated frame whose header is not valid JSON or does not fit a
  schema (unknown type, missing or extra field, out-of-range value, NaN) -> the frame is
  dropped and the connection kept (the sequence stays in step), up to a limit.

None of them reaches the node's or controller's state: messages are fully validated first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import struct
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from o2o.core.episodes import SCHED_UNIFORMS
from o2o.core.errors import UserError

PROTOCOL_VERSION = 1
TAG_BYTES = 32
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024   # configuration of a large network fits; chunks are small
HANDSHAKE_TIMEOUT_S = 5.0
MIN_TOKEN_CHARS = 16
MAX_NODES = 4096
TOKEN_ENV = "O2O_TESTBED_TOKEN"
STREAM_LIMIT_BYTES = 1024 * 1024  # asyncio stream buffer: a payload chunk fits without pausing

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


# ------------------------------------------------------------------------------ errors
class ProtocolError(Exception):
    """A frame or message that was rejected; ``reason`` is a short counter name."""

    reason = "protocol"


class FrameTooLarge(ProtocolError):
    reason = "oversized"


class AuthError(ProtocolError):
    reason = "unauthenticated"


class MalformedMessage(ProtocolError):
    reason = "malformed"


class UnexpectedMessage(ProtocolError):
    """A valid message that this end does not accept on this connection (or in this state)."""

    reason = "unexpected"


# ------------------------------------------------------------------------------ token
def token_key(token: str) -> bytes:
    """The 32-byte key of a shared token; a short or empty token is refused (UserError)."""
    token = (token or "").strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise UserError(f"the testbed token must have at least {MIN_TOKEN_CHARS} characters "
                        f"(set {TOKEN_ENV} or --token-file; e.g. `python -c \"import secrets; "
                        "print(secrets.token_hex(16))\"`)")
    return hashlib.sha256(b"o2o-testbed-token\x00" + token.encode()).digest()


def read_token(token_file: str | None) -> str:
    """The shared token from ``token_file`` or the environment (``O2O_TESTBED_TOKEN``)."""
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise UserError(f"cannot read the token file {token_file}: {exc.strerror}") from None
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise UserError(f"no testbed token: set {TOKEN_ENV} or pass --token-file")
    return token


# ------------------------------------------------------------------------------ messages
class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


NodeIndex = Annotated[int, Field(ge=0, lt=MAX_NODES)]
EpisodeIndex = Annotated[int, Field(ge=0)]
SlotIndex = Annotated[int, Field(ge=0, le=10_000_000)]
Nonce = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Count = Annotated[int, Field(ge=0)]
Outcome = Literal["SUCCESS", "DROP", "EXECUTION_FAILURE", "TRANSMISSION_FAILURE"]


class Challenge(_Msg):
    type: Literal["challenge"] = "challenge"
    version: int
    nonce: Nonce


class Hello(_Msg):
    type: Literal["hello"] = "hello"
    version: int
    role: Literal["node", "peer", "probe", "admin"]
    node: NodeIndex | None = None
    nonce: Nonce


# ---- node -> controller
class Register(_Msg):
    type: Literal["register"] = "register"
    node: NodeIndex | None = None          # None: the controller assigns the lowest free index
    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: Annotated[int, Field(ge=1, le=65535)]
    pid: Count


class TimeRequest(_Msg):
    type: Literal["time_req"] = "time_req"
    id: Count
    t_node: float


class Heartbeat(_Msg):
    type: Literal["heartbeat"] = "heartbeat"
    rejected: dict[str, Count] = {}


class Ready(_Msg):
    """Answer to ``prepare``: the node is connected to its alive peers, has loaded the model
    announced last (``model_version``, for drl) and built its scheduler; or ``error`` says why not."""

    type: Literal["ready"] = "ready"
    round: Count
    model_version: Annotated[int, Field(ge=1)] | None = None
    model_sha256: str | None = None
    error: Annotated[str, Field(max_length=2000)] | None = None


class Decision(_Msg):
    """What node ``node`` saw at the start of slot ``slot`` and what it decided (the log's
    observation fields, SPEC section 6). ``slot = T`` is the boundary after the last slot."""

    type: Literal["decision"] = "decision"
    episode: EpisodeIndex
    slot: SlotIndex
    node: NodeIndex
    has_task: bool
    action: Count
    action_prob: Annotated[float, Field(ge=0, le=1)] | None = None
    exec_len: Count
    recv_len: list[Count]
    peer_overloaded: list[bool]
    received_at: float
    decided_at: float
    # With a task: every node's execution backlog as this node probed it (None: not probed)
    # and its own send backlogs, seconds (observation v2, o2o.core.decpomdp).
    peer_backlog_s: list[Annotated[float, Field(ge=0)] | None] | None = None
    send_backlog_s: list[Annotated[float, Field(ge=0)]] | None = None


class TaskEvent(_Msg):
    """A task reached its destination's execution queue (``arrived``) or ended (``end``).
    Times are on the controller clock; None where the stage did not happen."""

    type: Literal["task_event"] = "task_event"
    episode: EpisodeIndex
    slot: SlotIndex
    source: NodeIndex
    dest: NodeIndex
    kind: Literal["arrived", "end"]
    outcome: Outcome | None = None
    tx_start: float | None = None
    tx_end: float | None = None
    exec_arrive: float | None = None
    exec_start: float | None = None
    end_at: float | None = None


Transfer = tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(ge=0)]]


class EpisodeStats(_Msg):
    """Measurements of one node over one episode, for the benchmark: the lateness of each slot
    message it received, (size bytes, rate B/s, seconds) of each payload it received (start of
    the transfer at the sender to the last byte processed here), and of each payload it sent
    (start to its last chunk handed to the kernel)."""

    type: Literal["episode_stats"] = "episode_stats"
    episode: EpisodeIndex
    slot_lateness_s: list[float]
    transfers: list[Transfer]
    sent: list[Transfer] = []         # the same seen by the sender: last chunk handed to the kernel
    rejected: dict[str, Count] = {}


# ---- controller -> node
class PeerAddress(_Msg):
    node: NodeIndex
    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: Annotated[int, Field(ge=1, le=65535)]


class NodeRuntime(_Msg):
    """How nodes run, pushed with the configuration."""

    heartbeat_s: Annotated[float, Field(gt=0)] = 0.1
    probe_timeout_s: Annotated[float, Field(gt=0)] = 0.05
    exec_mode: Literal["emulated", "compute"] = "emulated"
    compute_scale: Annotated[float, Field(gt=0)] = 1.0
    chunk_s: Annotated[float, Field(gt=0, le=1)] = 0.004
    max_frame_bytes: Annotated[int, Field(ge=64 * 1024)] = DEFAULT_MAX_FRAME_BYTES


class Config(_Msg):
    type: Literal["config"] = "config"
    node: NodeIndex
    scenario: dict
    network: dict
    peers: list[PeerAddress]
    alive: list[NodeIndex]
    runtime: NodeRuntime


class TimeReply(_Msg):
    type: Literal["time_reply"] = "time_reply"
    id: Count
    t_node: float
    t_ctrl: float


class Peers(_Msg):
    type: Literal["peers"] = "peers"
    peers: list[PeerAddress]
    alive: list[NodeIndex]


class Prepare(_Msg):
    """Between episodes: connect to the alive peers, load a pending model, build ``scheduler``,
    then answer ``ready`` with the same round."""

    type: Literal["prepare"] = "prepare"
    round: Count
    scheduler: Annotated[str, Field(min_length=1, max_length=64)]


class EpisodeStart(_Msg):
    type: Literal["episode_start"] = "episode_start"
    episode: EpisodeIndex
    seed: int
    epoch: float                      # controller-clock time of the start of slot 0
    scheduler: Annotated[str, Field(min_length=1, max_length=64)]


class TaskSpec(_Msg):
    """One task as the end device hands it over, with the episode's draws for it
    (``o2o.core.episodes``), so the testbed runs the simulator's task sequence."""

    size_bytes: Annotated[float, Field(gt=0)]
    cycles: Annotated[float, Field(gt=0)]
    deadline_s: Annotated[float, Field(gt=0)]
    tx_fail_clock: Annotated[float, Field(ge=0)]
    exec_fail_clock: Annotated[float, Field(ge=0)]
    sched_u: Annotated[list[Annotated[float, Field(ge=0, lt=1)]],
                       Field(min_length=SCHED_UNIFORMS, max_length=SCHED_UNIFORMS)]


class Slot(_Msg):
    type: Literal["slot"] = "slot"
    episode: EpisodeIndex
    slot: SlotIndex
    task: TaskSpec | None = None


class EpisodeEnd(_Msg):
    type: Literal["episode_end"] = "episode_end"
    episode: EpisodeIndex


class ModelAvailable(_Msg):
    """A new model version is in the store: load it (checksum verified) before the next episode."""

    type: Literal["model"] = "model"
    store: Annotated[str, Field(min_length=1, max_length=4096)]
    version: Annotated[int, Field(ge=1)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Shutdown(_Msg):
    type: Literal["shutdown"] = "shutdown"
    reason: Annotated[str, Field(max_length=2000)] = ""


class Reject(_Msg):
    type: Literal["reject"] = "reject"
    reason: Annotated[str, Field(max_length=2000)]


# ---- node <-> node
class Probe(_Msg):
    type: Literal["probe"] = "probe"
    id: Count


class ProbeAnswer(_Msg):
    """SPEC section 3: capacity, alpha, execution backlog in seconds and the overload flag."""

    type: Literal["probe_answer"] = "probe_answer"
    id: Count
    capacity_hz: Annotated[float, Field(gt=0)]
    node_fail_rate: Annotated[float, Field(ge=0)]
    exec_backlog_s: Annotated[float, Field(ge=0)]
    overloaded: bool
    exec_len: Count


class _TaskRef(_Msg):
    episode: EpisodeIndex
    slot: SlotIndex
    source: NodeIndex


class Announce(_TaskRef):
    """The task joined the sender's send queue towards the receiver (a receiving queue grows)."""

    type: Literal["announce"] = "announce"


class PayloadBegin(_TaskRef):
    type: Literal["payload_begin"] = "payload_begin"
    size_bytes: Annotated[int, Field(gt=0)]
    task_size_bytes: Annotated[float, Field(gt=0)]
    cycles: Annotated[float, Field(gt=0)]
    deadline_s: Annotated[float, Field(gt=0)]
    due: float
    exec_fail_clock: Annotated[float, Field(ge=0)]
    tx_start: float


class Chunk(_TaskRef):
    type: Literal["chunk"] = "chunk"


class PayloadEnd(_TaskRef):
    type: Literal["payload_end"] = "payload_end"


class PayloadAbort(_TaskRef):
    """The link failed during the transfer (SPEC 2.6): the payload will not complete."""

    type: Literal["payload_abort"] = "payload_abort"


class Cancel(_TaskRef):
    """The task left the send queue without a transfer (dropped at its head, SPEC 2.5)."""

    type: Literal["cancel"] = "cancel"


class Overload(_Msg):
    """The sender's 1-bit overload flag changed (pushed to every peer)."""

    type: Literal["overload"] = "overload"
    flag: bool


Message = Annotated[Union[
    Challenge, Hello, Register, TimeRequest, Heartbeat, Ready, Decision, TaskEvent, EpisodeStats,
    Config, TimeReply, Peers, Prepare, EpisodeStart, Slot, EpisodeEnd, ModelAvailable, Shutdown, Reject,
    Probe, ProbeAnswer, Announce, PayloadBegin, Chunk, PayloadEnd, PayloadAbort, Cancel, Overload,
], Field(discriminator="type")]

_MESSAGE = TypeAdapter(Message)


def parse_message(header: bytes):
    """A validated message from its JSON header, or ``MalformedMessage``."""
    try:
        return _MESSAGE.validate_json(header)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise MalformedMessage(f"{where}: {first['msg']} ({err.error_count()} error(s))") from None


def encode_message(msg: _Msg) -> bytes:
    return msg.__pydantic_serializer__.to_json(msg)


# ------------------------------------------------------------------------------ frames
def _tag(key: bytes, seq: int, payload: bytes | memoryview, body: bytes | memoryview = b"") -> bytes:
    mac = hmac.new(key, _U64.pack(seq), hashlib.sha256)
    mac.update(payload)
    if body:
        mac.update(body)
    return mac.digest()


def build_frame(key: bytes, seq: int, msg: _Msg, body: bytes | memoryview = b"") -> list:
    """The buffers of one frame (to ``writelines``), tagged for ``seq``."""
    header = encode_message(msg)
    head = _U32.pack(len(header)) + header
    tag = _tag(key, seq, head, body)
    length = TAG_BYTES + len(head) + len(body)
    parts = [_U32.pack(length) + tag + head]
    if body:
        parts.append(body)
    return parts


async def read_frame(reader: asyncio.StreamReader, key: bytes, seq: int, max_frame_bytes: int):
    """Read one frame, check its size and tag; returns (header bytes, body bytes)."""
    length = _U32.unpack(await reader.readexactly(4))[0]
    if length > max_frame_bytes:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {max_frame_bytes}")
    if length < TAG_BYTES + 4:
        raise MalformedMessage(f"frame of {length} bytes is too short")
    data = await reader.readexactly(length)
    view = memoryview(data)
    tag, rest = view[:TAG_BYTES], view[TAG_BYTES:]
    if not hmac.compare_digest(_tag(key, seq, rest), tag):
        raise AuthError("frame tag does not verify (wrong token, or tampered)")
    hlen = _U32.unpack(rest[:4])[0]
    if hlen > len(rest) - 4:
        raise MalformedMessage("header length exceeds the frame")
    return bytes(rest[4:4 + hlen]), rest[4 + hlen:]


class FramedConnection:
    """One authenticated, bidirectional stream of messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 send_key: bytes, recv_key: bytes, max_frame_bytes: int, peer: str):
        self.reader, self.writer = reader, writer
        self._send_key, self._recv_key = send_key, recv_key
        self._send_seq = self._recv_seq = 1          # 0 was the handshake frame
        self.max_frame_bytes = max_frame_bytes
        self.peer = peer
        self.closed = False

    def send(self, msg: _Msg, body: bytes | memoryview = b"") -> None:
        """Queue one frame (no await: frames written from different tasks never interleave)."""
        if self.closed or self.writer.is_closing():
            raise ConnectionResetError(f"connection to {self.peer} is closed")
        self.writer.writelines(build_frame(self._send_key, self._send_seq, msg, body))
        self._send_seq += 1

    async def drain(self) -> None:
        await self.writer.drain()

    async def recv(self):
        """(message, body) of the next frame; raises ProtocolError subclasses (see module doc),
        ``asyncio.IncompleteReadError`` at EOF, ``ConnectionError`` on a reset."""
        header, body = await read_frame(self.reader, self._recv_key, self._recv_seq,
                                        self.max_frame_bytes)
        self._recv_seq += 1   # the frame was authentic: the sequence moves even if it is malformed
        return parse_message(header), body

    def close(self) -> None:
        self.closed = True
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - closing a broken transport may raise; it is closed anyway
            pass


def _session_keys(key: bytes, nonce_s: str, nonce_c: str) -> tuple[bytes, bytes]:
    material = bytes.fromhex(nonce_s) + bytes.fromhex(nonce_c)
    c2s = hmac.new(key, b"c2s" + material, hashlib.sha256).digest()
    s2c = hmac.new(key, b"s2c" + material, hashlib.sha256).digest()
    return c2s, s2c


def _hello_key(key: bytes, nonce_s: str) -> bytes:
    """The client's hello is tagged with a key bound to the server's nonce (no replay)."""
    return hmac.new(key, b"hello" + bytes.fromhex(nonce_s), hashlib.sha256).digest()


def _peer_name(writer: asyncio.StreamWriter) -> str:
    info = writer.get_extra_info("peername")
    return f"{info[0]}:{info[1]}" if isinstance(info, tuple) and len(info) >= 2 else str(info)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    import socket

    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def server_handshake(reader, writer, key: bytes, max_frame_bytes: int,
                           timeout_s: float = HANDSHAKE_TIMEOUT_S) -> tuple[FramedConnection, Hello]:
    """Run the server side of the handshake; raises ProtocolError (or a timeout) on failure."""
    _nodelay(writer)
    nonce_s = os.urandom(16).hex()
    writer.writelines(build_frame(key, 0, Challenge(version=PROTOCOL_VERSION, nonce=nonce_s)))
    header, _ = await asyncio.wait_for(
        read_frame(reader, _hello_key(key, nonce_s), 0, min(max_frame_bytes, 64 * 1024)), timeout_s)
    hello = parse_message(header)
    if not isinstance(hello, Hello):
        raise UnexpectedMessage(f"expected hello, got {hello.type}")
    if hello.version != PROTOCOL_VERSION:
        raise UnexpectedMessage(f"protocol version {hello.version}, this end speaks {PROTOCOL_VERSION}")
    c2s, s2c = _session_keys(key, nonce_s, hello.nonce)
    return FramedConnection(reader, writer, s2c, c2s, max_frame_bytes, _peer_name(writer)), hello


async def open_connection(host: str, port: int, key: bytes, role: str, node: int | None,
                          max_frame_bytes: int, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> FramedConnection:
    """Connect and run the client side of the handshake."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, limit=STREAM_LIMIT_BYTES), timeout_s)
    try:
        _nodelay(writer)
        header, _ = await asyncio.wait_for(read_frame(reader, key, 0, 64 * 1024), timeout_s)
        challenge = parse_message(header)
        if not isinstance(challenge, Challenge):
            raise UnexpectedMessage(f"expected challenge, got {challenge.type}")
        if challenge.version != PROTOCOL_VERSION:
            raise UnexpectedMessage(f"server speaks protocol {challenge.version}, this end {PROTOCOL_VERSION}")
        nonce_c = os.urandom(16).hex()
        hello = Hello(version=PROTOCOL_VERSION, role=role, node=node, nonce=nonce_c)
        writer.writelines(build_frame(_hello_key(key, challenge.nonce), 0, hello))
        c2s, s2c = _session_keys(key, challenge.nonce, nonce_c)
        return FramedConnection(reader, writer, c2s, s2c, max_frame_bytes, f"{host}:{port}")
    except BaseException:
        writer.close()
        raise
