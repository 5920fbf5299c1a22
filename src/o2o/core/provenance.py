"""Which machine and libraries made a result file.

Learned results are bit for bit the same on one machine but drift between CPUs and library
builds (torch's float arithmetic differs, and many updates carry the last-bit differences into
other weights). A result file therefore records where it was made, so that two files that
disagree can be told apart from a bug: ``environment()``.
"""

from __future__ import annotations

import platform
from importlib import metadata

LIBRARIES = ("o2o", "numpy", "numba", "torch", "scipy")


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, object]:
    """The machine and library versions a result was computed with (no library is imported:
    versions come from the installed packages' metadata; None for one not installed)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": cpu_model(), "machine": platform.machine(), "system": platform.system(),
            "python": platform.python_version(), "libraries": versions}
