"""Ctrl-C during ``o2o collect``: a real SIGINT to a real process, 20 times into SQLite (and
twice into PostgreSQL). Every time: exit code 130 within 5 s, ``o2o: interrupted`` and no
traceback, the run marked ``interrupted``, and only whole batches of whole episodes kept.

The paper-sim preset takes about twice as long to write a batch of episodes (2000 task rows
each) as to simulate it, so the signals, sent at spread-out moments after the first batch, land
both in the simulator and inside the database driver's insert (where a Ctrl-C used to hang
SQLite for the 60 s of its busy timeout).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from urllib.request import pathname2url

import pytest
from sqlalchemy import text

from o2o.core.errors import UserError
from o2o.logs.store import LogStore
from tests.logs.test_store import postgres_url  # noqa: F401 (fixture)

REPEATS = 20
BATCH = 4
EXIT_WITHIN_S = 5.0
SLOTS, NODES = 100, 20  # paper-sim


def _episodes_written(db: str) -> int:
    if "://" not in db:  # SQLite: the driver alone, so the poll costs the writer little
        try:
            conn = sqlite3.connect(f"file:{pathname2url(db)}?mode=ro", uri=True, timeout=5)
            try:
                return conn.execute("SELECT count(*) FROM episodes").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return 0  # not created yet
    try:
        with LogStore.open(db, read_only=True) as store:
            with store.engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM episodes")).scalar_one()
    except UserError:
        return 0


def _as_from_a_terminal() -> None:
    """The child's SIGINT as a command started from a terminal has it: default. A test run
    started in the background of a non-interactive shell (``cmd &``) inherits SIGINT ignored,
    and so would every child, which then could not be interrupted at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_collect(db: str, delay_s: float, cwd) -> tuple[int, float, str]:
    """Start ``o2o collect`` into ``db``, wait for its first batch, wait ``delay_s`` more, send
    SIGINT; returns the exit code, the seconds from the signal to the exit, and stderr."""
    cmd = [sys.executable, "-m", "o2o.cli", "collect", "--episodes", "100000", "--batch-size",
           str(BATCH), "--db", db, "--json"]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            preexec_fn=_as_from_a_terminal)
    try:
        deadline = time.monotonic() + 120
        while _episodes_written(db) < BATCH:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "collect wrote no batch within 120 s"
            time.sleep(0.05)
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        return proc.returncode, time.monotonic() - sent, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def check_interrupted_log(db: str) -> int:
    """The run is marked interrupted and holds whole batches of whole episodes; returns the
    number of episodes kept."""
    with LogStore.open(db, read_only=True) as store:
        (info,) = store.runs()
        assert info.status == "interrupted" and info.ended_at is not None
        counts = store.episode_counts(info.id)
        kept = counts.episode_index.size
        assert kept >= BATCH and kept % BATCH == 0, kept
        assert counts.episode_index.tolist() == list(range(kept))
        with store.engine.connect() as conn:
            per_episode = conn.execute(text(
                "SELECT count(*) FROM tasks GROUP BY episode_id")).scalars().all()
            ends = conn.execute(text("SELECT count(*) FROM episode_end_state")).scalar_one()
        assert per_episode == [SLOTS * NODES] * kept
        assert ends == kept * NODES
    return kept


def _delay(k: int) -> float:
    """Spread over about one batch period (4 episodes of paper-sim take ~0.25 s to simulate
    and write, more on a busy machine), so the signals land in every part of it."""
    return (k * 0.07) % 0.35


def test_the_command_line_loads_torch_only_for_the_commands_that_learn():
    """An interpreter that has loaded torch takes most of a second to exit, enough to miss the
    5 s under a loaded machine: building the parser and collecting logs must not load it."""
    code = ("import sys; from o2o.cli.main import build_parser; build_parser(); "
            "import o2o.logs.collect; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout


@pytest.mark.parametrize("k", range(REPEATS))
def test_ctrl_c_during_collect_into_sqlite(k, tmp_path):
    db = str(tmp_path / "log.db")
    code, seconds, err = interrupt_collect(db, _delay(k), tmp_path)
    assert code == 130, err
    assert seconds < EXIT_WITHIN_S, f"exit took {seconds:.1f} s"
    assert "o2o: interrupted" in err and "Traceback" not in err, err
    check_interrupted_log(db)
    assert sorted(os.listdir(tmp_path)) == ["log.db"]  # the -wal and -shm went with the writer


@pytest.mark.postgres
@pytest.mark.parametrize("k", range(2))
def test_ctrl_c_during_collect_into_postgres(k, postgres_url, tmp_path):  # noqa: F811
    code, seconds, err = interrupt_collect(postgres_url, _delay(3 * k + 1), tmp_path)
    assert code == 130, err
    assert seconds < EXIT_WITHIN_S, f"exit took {seconds:.1f} s"
    assert "o2o: interrupted" in err and "Traceback" not in err, err
    check_interrupted_log(postgres_url)
