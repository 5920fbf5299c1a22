"""Process-wide memory settings for the learner's loops."""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the
    system. A training step allocates and frees the same tensors every time (a prefetched chunk
    of minibatches is tens of MB); memory handed back and taken again costs a page fault per
    4 KiB, about a hundred per offline step here and a fifth of its time. Changes no number
    computed; does nothing where the C library is not glibc. Idempotent."""
    global _done
    if _done:
        return
    _done = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)   # glibc's largest: blocks under 32 MiB come from the heap
    mallopt(_M_TRIM_THRESHOLD, 512 << 20)  # keep up to 512 MiB of free heap for reuse
