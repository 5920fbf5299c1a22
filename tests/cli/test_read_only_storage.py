"""A task log on a read-only medium, for real: a read-only bind mount in a mount namespace of
its own (``unshare``; skipped where the system does not allow one). Reading works and leaves
no ``-wal`` or ``-shm`` file; writing there is refused in one line, exit code 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from o2o.cli.main import main

SMALL = ["--set", "nodes=4", "--set", "slots=10"]


def _namespace_command() -> list[str] | None:
    """``unshare`` arguments that give a mount namespace where this user may bind-mount."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return None
    for cmd in (["unshare", "--mount"], ["unshare", "--mount", "--map-root-user"]):
        probe = subprocess.run([*cmd, "sh", "-c", "mount --bind -o ro / /mnt 2>/dev/null || "
                                "mount --bind -o ro /tmp /tmp"], capture_output=True)
        if probe.returncode == 0:
            return cmd
    return None


NAMESPACE = _namespace_command()

# (name, o2o arguments, expected exit code, text expected on stderr when refused)
COMMANDS = [
    ("summary", ["logs", "summary", "--db", "{ro}/log.db", "--json"], 0, ""),
    ("export", ["dataset", "export", "--db", "{ro}/log.db", "--out", "{out}/d.npz", "--json"], 0, ""),
    ("export-here", ["dataset", "export", "--db", "{ro}/log.db", "--out", "{ro}/new.npz"], 2,
     "a read-only file system"),
    ("collect-new", ["collect", *SMALL, "--episodes", "1", "--db", "{ro}/new.db"], 2,
     "a read-only file system"),
    ("collect-into", ["collect", *SMALL, "--episodes", "1", "--db", "{ro}/log.db"], 2,
     "cannot be written here"),
    ("train", ["train", "offline", *SMALL, "--dataset", "{ro}/d.npz", "--out", "{ro}/model",
               "--steps", "1"], 2, "a read-only file system"),
]


@pytest.mark.skipif(NAMESPACE is None, reason="no mount namespace with bind mounts here")
def test_a_task_log_on_a_read_only_medium(tmp_path):
    src, ro, out = tmp_path / "src", tmp_path / "ro", tmp_path / "out"
    for folder in (src, ro, out):
        folder.mkdir()
    assert main(["collect", *SMALL, "--episodes", "2", "--db", str(src / "log.db"), "--json"]) == 0
    assert main(["dataset", "export", "--db", str(src / "log.db"), "--out", str(src / "d.npz")]) == 0
    listing = sorted(os.listdir(src))
    # All commands at once, in one namespace where ro/ is src/ mounted read-only.
    runs = []
    for name, args, _, _ in COMMANDS:
        argv = " ".join(f"'{a.format(ro=ro, out=out)}'" for a in args)
        runs.append(f"({sys.executable} -m o2o.cli {argv} >{out}/{name}.out 2>{out}/{name}.err; "
                    f"echo $? >{out}/{name}.rc) &")
    script = f"mount --bind -o ro {src} {ro} || exit 99; " + " ".join(runs) + " wait"
    done = subprocess.run([*NAMESPACE, "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name, _, code, expect in COMMANDS:
        rc = int((out / f"{name}.rc").read_text())
        err = (out / f"{name}.err").read_text()
        assert rc == code, f"{name}: exit {rc}\n{err}"
        if code == 2:
            assert len(err.rstrip("\n").split("\n")) == 1 and err.startswith("o2o: error: "), err
            assert expect in err, f"{name}: {err}"
        else:
            assert "Traceback" not in err, err
    assert '"runs": [1]' in (out / "export.out").read_text()
    assert sorted(os.listdir(src)) == listing  # no -wal, -shm or anything else appeared
