"""What every refusal must look like (the README's promise): exit code 2, one line on stderr
starting ``o2o: error:``, no traceback, and nothing written under the folders watched."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from o2o.cli.main import main


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file (its SHA-256) and folder under ``roots``."""
    seen = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs:
                seen[os.path.join(folder, name)] = "folder"
            for name in files:
                path = os.path.join(folder, name)
                with open(path, "rb") as fh:
                    seen[path] = hashlib.sha256(fh.read()).hexdigest()
    return seen


def assert_refusal(code: int, err: str, argv, expect: str = "") -> None:
    assert code == 2, f"exit {code} for {argv}\nstderr: {err[-3000:]}"
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("o2o: error: "), f"{argv}: stderr is\n{err[-3000:]}"
    assert "Traceback" not in err
    assert any(e.lower() in err.lower() for e in expect.split("|")), \
        f"{argv}: expected {expect!r} in {err!r}"


def refused(argv: list[str], capfd, *roots: Path, expect: str = "") -> str:
    """Run ``o2o argv`` in this process; assert a one-line refusal that says ``expect`` (or one
    of its ``|``-separated alternatives) and left every file and folder under ``roots`` as it
    was. Returns the line."""
    before = snapshot(*roots)
    capfd.readouterr()
    code = main([str(a) for a in argv])   # an exception escaping here is a traceback
    _, err = capfd.readouterr()
    assert_refusal(code, err, argv, expect)
    after = snapshot(*roots)
    added = sorted(set(after) - set(before))
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not added and not changed, f"{argv} changed files: added {added}, changed {changed}"
    return err
