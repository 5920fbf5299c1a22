"""Real compute for ``exec_mode = "compute"``: instead of being busy for T^c = c / F_j seconds
(eq. 1), a node burns CPU work, SHA-256 over a buffer, as much as this host hashes in that time
(times ``compute_scale``), so that contention between node processes is real."""

from __future__ import annotations

import hashlib
import time

_BURN_BLOCK = bytes(64 * 1024)


def burn_rate_Bps(seconds: float = 0.05) -> float:
    """Bytes of SHA-256 this host does per second on one thread (the unit of real work)."""
    h = hashlib.sha256()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        h.update(_BURN_BLOCK)
        done += len(_BURN_BLOCK)
    return done / (time.perf_counter() - start)


def burn(nbytes: float, stop_at_local: float) -> bool:
    """Hash ``nbytes`` of zeros; stop early at ``stop_at_local`` (time.monotonic). True when done."""
    h = hashlib.sha256()
    done = 0.0
    while done < nbytes:
        if time.monotonic() >= stop_at_local:
            return False
        h.update(_BURN_BLOCK)
        done += len(_BURN_BLOCK)
    return True
