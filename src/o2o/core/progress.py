"""Progress bars (tqdm) that stay out of the way of JSON output and non-interactive runs."""

from __future__ import annotations

import sys

from tqdm import tqdm

# A bar appears only after this long: a command that is refused or done within it prints none
# (a refusal is then the only line on stderr).
SHOW_AFTER_S = 0.5


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False, **kw):
    """A tqdm bar on stderr; disabled on request (e.g. with --json) and where stderr is not a
    terminal (a file, a pipe, CI's log): a bar redrawn there leaves a line of fragments per
    update, between the lines that matter."""
    kw.setdefault("delay", SHOW_AFTER_S)
    disable = disable or not _is_terminal(sys.stderr)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr,
                dynamic_ncols=True, leave=False, **kw)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False
