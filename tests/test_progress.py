"""Progress bars stay off stderr where it is not a terminal (files, pipes, CI logs)."""

from __future__ import annotations

import io
import sys

from o2o.core.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal_and_not_into_a_file(monkeypatch):
    for stream, drawn in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with progress_bar(total=3, desc="work", delay=0) as bar:
            bar.update(3)
        assert ("work" in stream.getvalue()) is drawn
        with progress_bar(total=3, desc="quiet", delay=0, disable=True) as bar:
            bar.update(3)
        assert "quiet" not in stream.getvalue()
