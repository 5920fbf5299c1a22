"""What a receiver rejects, by reason (each ``reason`` is the name of a counter that nodes report
in their heartbeats and the controller logs).

* ``FrameTooLarge``: the frame's length exceeds the receiver's limit -> the connection is closed
  without reading it (its bytes cannot be trusted);
* ``AuthError``: the frame's HMAC tag does not verify -> the connection is closed (the sender does
  not hold the token, or the stream was tampered with);
* ``MalformedMessage``: an authentic frame whose header is not valid JSON or does not fit a message
  schema -> the frame is dropped and the connection kept (its sequence stays in step), up to a limit;
* ``UnexpectedMessage``: a valid message that this end does not accept on this connection or in
  this state (a chunk of a task never begun, a controller message on a data link).
"""

from __future__ import annotations


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
