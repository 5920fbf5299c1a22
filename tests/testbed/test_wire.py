"""The testbed's wire format: framing, authentication, schema checks (no processes)."""

from __future__ import annotations

import asyncio
import math
import struct

import pytest

from o2o.core.errors import UserError
from o2o.testbed import wire
from o2o.testbed.wire import frames

TOKEN = "0123456789abcdef-test-token"
KEY = wire.token_key(TOKEN)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def pair(client_key=KEY, server_key=KEY, max_frame=wire.DEFAULT_MAX_FRAME_BYTES, role="peer"):
    """A server and a client connection over loopback; returns (client, server, hello)."""
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on(reader, writer):
        try:
            accepted.set_result(await wire.server_handshake(reader, writer, server_key, max_frame))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            accepted.set_exception(exc)

    server = await asyncio.start_server(on, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = await wire.open_connection("127.0.0.1", port, client_key, role, 3, max_frame)
    except BaseException as exc:
        # The server's side ends too (the client hung up): hand its failure to the test, so that
        # no future is left with an exception nobody retrieved.
        done, _ = await asyncio.wait({accepted}, timeout=wire.HANDSHAKE_TIMEOUT_S + 1)
        exc.server_error = accepted.exception() if done else None
        server.close()
        raise
    conn, hello = await accepted
    server.close()
    return client, conn, hello


def task_spec(**over):
    base = dict(size_bytes=1000.0, cycles=5e6, deadline_s=1.0, tx_fail_clock=0.5, exec_fail_clock=2.0,
                sched_u=[0.1, 0.2, 0.3, 0.4])
    base.update(over)
    return base


def test_round_trip_both_directions_with_body():
    async def main():
        client, server, hello = await pair()
        assert hello.role == "peer" and hello.node == 3
        client.send(wire.Slot(episode=1, slot=2, task=wire.TaskSpec(**task_spec())))
        client.send(wire.Chunk(episode=1, slot=2, source=3), b"x" * 70000)
        server.send(wire.ProbeAnswer(id=7, capacity_hz=1e10, node_fail_rate=0.05, exec_backlog_s=0.3,
                                  overloaded=True, exec_len=4))
        m1, b1 = await server.recv()
        m2, b2 = await server.recv()
        m3, _ = await client.recv()
        assert isinstance(m1, wire.Slot) and m1.task.sched_u == [0.1, 0.2, 0.3, 0.4] and len(b1) == 0
        assert isinstance(m2, wire.Chunk) and bytes(b2) == b"x" * 70000
        assert isinstance(m3, wire.ProbeAnswer) and m3.overloaded and m3.exec_len == 4
        client.close()
        server.close()

    run(main())


def test_wrong_token_fails_the_handshake_on_both_sides():
    other = wire.token_key("another-token-of-16+chars")

    async def main():
        with pytest.raises(wire.AuthError) as refused:
            await pair(client_key=other)
        # The client refused the server's challenge and hung up: the server got no hello.
        assert isinstance(refused.value.server_error, asyncio.IncompleteReadError)

    run(main())


def test_server_rejects_a_hello_made_with_another_token():
    """The client verifies the challenge with its key; forge a client that skips that check."""
    async def main():
        result: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on(reader, writer):
            try:
                await wire.server_handshake(reader, writer, KEY, 1 << 20)
                result.set_result("accepted")
            except wire.ProtocolError as exc:
                result.set_result(exc.reason)

        server = await asyncio.start_server(on, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        header, _ = await wire.read_frame(reader, KEY, 0, 1 << 16)          # the challenge
        nonce = wire.parse_message(header).nonce
        wrong = wire.token_key("not-the-shared-token!!")
        hello = wire.Hello(version=wire.PROTOCOL_VERSION, role="peer", node=0, nonce="0" * 32)
        writer.writelines(wire.build_frame(frames._hello_key(wrong, nonce), 0, hello))
        assert await result == "unauthenticated"
        writer.close()
        server.close()

    run(main())


def test_tampered_frame_is_rejected():
    async def main():
        client, server, _ = await pair()
        frame = b"".join(bytes(b) for b in wire.build_frame(client._send_key, client._send_seq,
                                                          wire.Probe(id=1)))
        tampered = bytearray(frame)
        tampered[-3] ^= 0x01                     # flip one bit of the header
        client.writer.write(bytes(tampered))
        with pytest.raises(wire.AuthError):
            await server.recv()

    run(main())


def test_replayed_frame_is_rejected():
    async def main():
        client, server, _ = await pair()
        frame = b"".join(bytes(b) for b in wire.build_frame(client._send_key, client._send_seq, wire.Probe(id=1)))
        client.writer.write(frame)
        client.writer.write(frame)               # the same bytes again: its sequence number is old
        msg, _ = await server.recv()
        assert msg.id == 1
        with pytest.raises(wire.AuthError):
            await server.recv()

    run(main())


def test_oversized_frame_is_rejected_before_reading_it():
    async def main():
        client, server, _ = await pair(max_frame=64 * 1024)
        # Only the length prefix is sent: the receiver must refuse on the length alone.
        client.writer.write(struct.pack(">I", 10 * 1024 * 1024))
        with pytest.raises(wire.FrameTooLarge):
            await asyncio.wait_for(server.recv(), 2)

    run(main())


@pytest.mark.parametrize("header", [
    b"{not json",
    b'{"type": "probe", "id": 1, "extra": 2}',                    # extra field
    b'{"type": "probe", "id": -1}',                               # negative id
    b'{"type": "no-such-message"}',                               # unknown type
    b'{"type": "slot", "episode": 0, "slot": 0, "task": {"size_bytes": NaN, "cycles": 1,'
    b' "deadline_s": 1, "tx_fail_clock": 0, "exec_fail_clock": 0, "sched_u": [0,0,0,0]}}',
    b'{"type": "slot", "episode": 0, "slot": 0, "task": {"size_bytes": 1, "cycles": 1,'
    b' "deadline_s": 1, "tx_fail_clock": 0, "exec_fail_clock": 0, "sched_u": [0,0,0]}}',
    b'{"type": "probe_answer", "id": 1, "capacity_hz": -5, "node_fail_rate": 0,'
    b' "exec_backlog_s": 0, "overloaded": false, "exec_len": 0}',
])
def test_authentic_but_malformed_message_is_dropped_and_the_stream_goes_on(header):
    async def main():
        client, server, _ = await pair()
        head = struct.pack(">I", len(header)) + header
        tag = frames._tag(client._send_key, client._send_seq, head)
        client.writer.write(struct.pack(">I", wire.TAG_BYTES + len(head)) + tag + head)
        client._send_seq += 1
        client.send(wire.Probe(id=42))
        with pytest.raises(wire.MalformedMessage):
            await server.recv()
        msg, _ = await server.recv()              # the connection is still in step
        assert isinstance(msg, wire.Probe) and msg.id == 42

    run(main())


def test_short_or_missing_token_is_a_user_error(monkeypatch):
    with pytest.raises(UserError, match="at least 16"):
        wire.token_key("short")
    monkeypatch.delenv(wire.TOKEN_ENV, raising=False)
    with pytest.raises(UserError, match=wire.TOKEN_ENV):
        wire.read_token(None)


def test_messages_refuse_infinite_and_nan_numbers():
    with pytest.raises(Exception):
        wire.TaskSpec(**task_spec(deadline_s=math.inf))
    with pytest.raises(Exception):
        wire.ProbeAnswer(id=1, capacity_hz=1.0, node_fail_rate=0.0, exec_backlog_s=math.nan,
                      overloaded=False, exec_len=0)


def test_prepare_carries_a_tunable_rules_values_checked_in_full():
    """``prepare`` names the rule and, for a tuned one, its values; the node builds it at them."""
    msg = wire.Prepare(round=1, scheduler="slack-reliable", params={"local_margin": 0.8, "rel_power": 64})
    back = wire.parse_message(wire.encode_message(msg))
    assert back == msg and back.params == {"local_margin": 0.8, "rel_power": 64.0}
    assert wire.parse_message(wire.encode_message(wire.Prepare(round=2, scheduler="ratc"))).params is None
    for bad in ({"rel_power": math.nan}, {"rel_power": math.inf}, {"Bad Name": 1.0},
                {f"p{k}": 1.0 for k in range(17)}, {"rel_power": "sharp"}):
        with pytest.raises(Exception):
            wire.Prepare(round=1, scheduler="slack-reliable", params=bad)
