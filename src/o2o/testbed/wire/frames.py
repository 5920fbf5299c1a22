"""The testbed's wire format: length-prefixed frames, HMAC authentication, the handshake and the
shared token (the messages the frames carry are in ``messages``).

Frame
    ``length (uint32, big endian) | tag (32 bytes) | header length (uint32) | header | body``

    ``length`` counts everything after itself and is checked against the receiver's limit
    (``max_frame_bytes``) *before* anything is read, so an oversized frame costs nothing.
    ``header`` is one JSON message (``messages``); ``body`` is raw bytes (a payload chunk) or
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
import socket
import struct

from o2o.core.errors import UserError
from o2o.testbed.wire.errors import (
    AuthError,
    FrameTooLarge,
    MalformedMessage,
    ProtocolError,
    UnexpectedMessage,
)
from o2o.testbed.wire.messages import (
    Challenge,
    Hello,
    _Msg,
    encode_message,
    parse_message,
)

# 2: ``prepare`` carries a tunable rule's parameters.
PROTOCOL_VERSION = 2
TAG_BYTES = 32
HANDSHAKE_TIMEOUT_S = 5.0
MIN_TOKEN_CHARS = 16
TOKEN_ENV = "O2O_TESTBED_TOKEN"
STREAM_LIMIT_BYTES = 1024 * 1024  # asyncio stream buffer: a payload chunk fits without pausing

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


# ------------------------------------------------------------------------------ token and addresses
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
        except UnicodeDecodeError:
            raise UserError(f"the token file {token_file} is not UTF-8 text") from None
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise UserError(f"no testbed token: set {TOKEN_ENV} or pass --token-file")
    return token


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` from the command line (an empty host is every interface); ``what`` names
    the option in the error message."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"{what} {text!r} must look like HOST:PORT, e.g. 127.0.0.1:7000")
    return host or "0.0.0.0", int(port)


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


def peer_name(writer: asyncio.StreamWriter) -> str:
    """``host:port`` of the other end of a stream, for log lines."""
    info = writer.get_extra_info("peername")
    return f"{info[0]}:{info[1]}" if isinstance(info, tuple) and len(info) >= 2 else "unknown"


def _nodelay(writer: asyncio.StreamWriter) -> None:
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
    return FramedConnection(reader, writer, s2c, c2s, max_frame_bytes, peer_name(writer)), hello


async def accept(reader, writer, key: bytes, max_frame_bytes: int, on_reject
                 ) -> tuple[FramedConnection, Hello] | None:
    """The server side of the handshake in a connection handler: the connection and the
    client's hello, or None when the handshake failed and the stream was closed. A client that
    broke the protocol or was too slow is first handed to ``on_reject(where, exc)``."""
    try:
        return await server_handshake(reader, writer, key, max_frame_bytes)
    except (ProtocolError, asyncio.TimeoutError) as exc:
        on_reject(peer_name(writer), exc)
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    writer.close()
    return None


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


class FramedServer:
    """A TCP server whose shutdown ends every connection handler by closing its stream (the
    handler reads EOF and returns) instead of cancelling it: ``asyncio.start_server`` reports a
    cancelled handler as an error on Python 3.11, and a normal shutdown must be quiet."""

    def __init__(self, handler):
        self._handler = handler
        self._server: asyncio.base_events.Server | None = None
        self._open: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self.port = 0

    async def start(self, host: str, port: int, who: str) -> int:
        """Listen (port 0: a free port); the port it got. ``who`` (e.g. "node") names the
        server in the error a user gets when the address cannot be used."""
        try:
            self._server = await asyncio.start_server(self._serve, host, port, limit=STREAM_LIMIT_BYTES)
        except OSError as exc:
            raise UserError(f"{who} cannot listen on {host}:{port}: {exc.strerror}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._open[task] = writer
        try:
            await self._handler(reader, writer)
        finally:
            self._open.pop(task, None)

    async def close(self, timeout_s: float = 1.0) -> None:
        """Stop listening, close every open connection and wait for the handlers to return."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._open.values()):
            writer.close()
        handlers = [t for t in self._open if t is not asyncio.current_task()]
        if handlers:
            await asyncio.wait(handlers, timeout=timeout_s)
