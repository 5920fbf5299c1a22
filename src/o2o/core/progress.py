"""Progress bars (tqdm) that stay out of the way of JSON output and non-interactive runs."""

from __future__ import annotations

import sys

from tqdm import tqdm

# A bar appears only after this long: a command that is refused or done within it prints none
# (a refusal is then the only line on stderr).
SHOW_AFTER_S = 0.5


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False, **kw):
    """A tqdm bar on stderr; disabled on request (e.g. with --json)."""
    kw.setdefault("delay", SHOW_AFTER_S)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr,
                dynamic_ncols=True, leave=False, **kw)
