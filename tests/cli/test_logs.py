"""The task-log commands end to end through ``o2o.cli.main``: collect, logs summary, dataset
export, bench logs; bad input gives exit code 2 and leaves files as they were (a real Ctrl-C:
``test_interrupts``)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3

import numpy as np

from o2o.cli.main import main

SMALL = ["--set", "nodes=4", "--set", "slots=10"]


def _json_out(capsys, argv) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_collect_summary_export_end_to_end(tmp_path, capsys):
    db = str(tmp_path / "runs" / "ratc.db")
    common = [*SMALL, "--network-seed", "2", "--seed", "3", "--episodes", "6"]
    collected = _json_out(capsys, ["collect", *common, "--scheduler", "ratc", "--db", db, "--json"])
    simulated = _json_out(capsys, ["simulate", *common, "--scheduler", "ratc", "--json"])["ratc"]
    summary = _json_out(capsys, ["logs", "summary", "--db", db, "--json"])
    (run,) = summary["runs"]
    assert collected["run"] == run["run"] and collected["task_rows"] == 6 * 10 * 4
    assert run["success_rate"] == simulated["success_rate"] == collected["success_rate"]
    for key in ("tasks", "success", "drop", "exec_fail", "trans_fail"):
        assert run[key] == simulated[key], key
    assert (run["episodes"], run["status"], run["scheduler"], run["network_seed"]) == (6, "completed", "ratc", 2)
    # A second run goes into the same file.
    _json_out(capsys, ["collect", *common, "--scheduler", "random", "--db", db, "--json"])
    # Plain text output names the runs and their success rates.
    capsys.readouterr()
    assert main(["logs", "summary", "--db", db]) == 0
    printed = capsys.readouterr().out
    assert "2 runs, 12 episodes" in printed and "ratc" in printed and "random" in printed
    assert f"{run['success_rate']:.4f}" in printed
    out = tmp_path / "ratc.npz"
    exported = _json_out(capsys, ["dataset", "export", "--db", db, "--out", str(out), "--run",
                                  str(run["run"]), "--json"])
    assert exported["rows"] == 6 * 10 * 4 and exported["runs"] == [run["run"]]
    with np.load(out, allow_pickle=False) as npz:
        assert npz["actions"].shape == (240,) and npz["observations"].shape == (240, 3 * 4 + 6)
        assert set(npz["run_ids"].tolist()) == {run["run"]}


def test_bad_input_exits_2_and_touches_nothing(tmp_path, capsys):
    missing = tmp_path / "nope.db"
    text_file = tmp_path / "notes.txt"
    text_file.write_text("these are my notes, not a database\n")
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
        conn.execute("INSERT INTO accounts VALUES (1, 'someone')")
    conn.close()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    future = tmp_path / "future.db"
    assert main(["collect", *SMALL, "--episodes", "1", "--db", str(future), "--json"]) == 0
    with sqlite3.connect(future) as conn:
        conn.execute("UPDATE o2o_schema SET version = 99")
    conn.close()
    older = tmp_path / "older.db"  # a version-1 log: it lacks the probed backlogs
    assert main(["collect", *SMALL, "--episodes", "1", "--db", str(older), "--json"]) == 0
    with sqlite3.connect(older) as conn:
        conn.execute("UPDATE o2o_schema SET version = 1")
    conn.close()
    files = [text_file, foreign, empty, future, older]
    before = {p: _digest(p) for p in files}

    cases = [
        (["logs", "summary", "--db", str(missing)], "does not exist"),
        (["dataset", "export", "--db", str(missing), "--out", str(tmp_path / "x.npz")], "does not exist"),
        (["logs", "summary", "--db", str(text_file)], "not a SQLite database"),
        (["collect", *SMALL, "--episodes", "1", "--db", str(text_file)], "not a SQLite database"),
        (["logs", "summary", "--db", str(foreign)], "not an o2o task log"),
        (["collect", *SMALL, "--episodes", "1", "--db", str(foreign)], "not an o2o task log"),
        (["logs", "summary", "--db", str(empty)], "holds no task log"),
        (["logs", "summary", "--db", str(future)], "schema version 99"),
        (["collect", *SMALL, "--episodes", "1", "--db", str(future)], "schema version 99"),
        (["dataset", "export", "--db", str(older), "--out", str(tmp_path / "x.npz")], "schema version 1"),
        (["collect", *SMALL, "--episodes", "1", "--db", str(older)], "schema version 1"),
        (["logs", "summary", "--db", str(tmp_path)], "is a directory"),
        (["logs", "summary", "--db", "postgresql+psycopg://o2o:pw@127.0.0.1:9/none"], "cannot open task log"),
        (["logs", "summary", "--db", "oracle://scott:tiger@db/x"], "unsupported database"),
        (["collect", *SMALL, "--episodes", "0", "--db", str(tmp_path / "new.db")], "--episodes"),
        (["collect", *SMALL, "--set", "nodes=1", "--db", str(tmp_path / "new.db")], "nodes"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("o2o: error:") and message in err, (argv, err)
        assert "Traceback" not in err
    assert not missing.exists() and not (tmp_path / "x.npz").exists()
    assert not (tmp_path / "new.db").exists()
    assert {p: _digest(p) for p in files} == before


def test_export_refuses_unknown_runs_and_mixed_node_counts(tmp_path, capsys):
    db = str(tmp_path / "mixed.db")
    assert main(["collect", *SMALL, "--episodes", "2", "--db", db, "--json"]) == 0
    assert main(["collect", "--set", "nodes=3", "--set", "slots=10", "--episodes", "2",
                 "--db", db, "--json"]) == 0
    out = str(tmp_path / "d.npz")
    capsys.readouterr()
    assert main(["dataset", "export", "--db", db, "--out", out]) == 2
    assert "different numbers of nodes" in capsys.readouterr().err
    assert main(["dataset", "export", "--db", db, "--out", out, "--run", "7"]) == 2
    assert "no run 7" in capsys.readouterr().err
    assert not os.path.exists(out)
    assert main(["dataset", "export", "--db", db, "--out", out, "--run", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["obs_dim"] == 3 * 3 + 6


def test_bench_logs_prints_a_throughput(capsys):
    result = _json_out(capsys, ["bench", "logs", *SMALL, "--episodes", "2", "--repeats", "1", "--json"])
    assert result["sqlite"]["rows_per_s"] > 0
    assert result["sqlite"]["rows_per_repeat"] == 2 * 10 * 4
