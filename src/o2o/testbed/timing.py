"""Clocks of the testbed.

Every time in a message is on the **controller clock**: the controller's ``time.monotonic()``.
A node keeps ``offset`` such that ``time.monotonic() + offset`` is the controller clock, measured
NTP-style at registration (several round trips, the one with the smallest round-trip time wins:
its error is at most half that round trip). On one machine the offset is ~0; across hosts it
removes the difference of the monotonic clocks (which have unrelated origins), and wall-clock
jumps cannot disturb it.

Every wait for a moment in time is a wait for an **absolute** deadline (``sleep_until``), never
a relative sleep after some work, so lateness does not accumulate over slots, payload chunks or
executions.
"""

from __future__ import annotations

import asyncio
import math
import time


class Clock:
    """The controller clock as seen from one process."""

    def __init__(self, offset_s: float = 0.0):
        self.offset_s = offset_s

    def now(self) -> float:
        return time.monotonic() + self.offset_s

    def to_local(self, t: float) -> float:
        return t - self.offset_s


async def sleep_until(clock: Clock, deadline: float, spin_s: float = 0.0) -> float:
    """Wait until ``deadline`` (controller clock); return the lateness in seconds (>= 0).

    The event loop wakes up to about a millisecond late (its timers have millisecond
    resolution); ``spin_s`` > 0 sleeps until that much before the deadline and then polls the
    clock, trading a little CPU for precision (used by the slot clock only)."""
    delay = deadline - clock.now() - spin_s
    if delay > 0:
        await asyncio.sleep(delay)
    if spin_s > 0:
        while clock.now() < deadline:
            pass
    return max(clock.now() - deadline, 0.0)


def percentile(values, q: float) -> float:
    """The q-th percentile (0..100, nearest-rank), NaN for no values."""
    data = sorted(values)
    if not data:
        return math.nan
    rank = max(int(math.ceil(q / 100.0 * len(data))), 1)
    return float(data[min(rank, len(data)) - 1])
