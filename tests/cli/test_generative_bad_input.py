"""Generated bad inputs for every command and file format, against the README's promise: a
refusal is one line on stderr starting ``o2o: error:``, exit code 2, no traceback, and nothing
written (every file and folder under the working and temporary folders listed and checksummed
before and after).

What is generated:

* argument values for every option of every command (from the parsers): counts above their
  bound or below 1, huge, negative, NaN and infinite numbers, text, wrong choices, unknown
  options, repeated values where a repeat is refused;
* YAML in scenario files, sweep specs, ``--set`` and ``--set-hparam`` values: deep nesting,
  anchors and aliases (billion laughs), repeated keys, bytes that are not UTF-8, oversized text;
* data sets, model folders, results databases and task logs with one field corrupted: a
  refusal as above, or (when the value happens to be valid) a normal run; never a traceback.

Each command runs in a child forked from a process that loaded o2o once
(``tests/cli/fuzz_zygote.py``), under a memory cap and a time limit: a regression that
allocates without bound or hangs fails its example instead of taking the host.

Budget: in the normal test run every test draws a fixed, reproducible set of examples
(``derandomize``; about a minute in all on 2 cores). A longer search, with fresh examples:

    O2O_FUZZ_EXAMPLES=2000 python -m pytest tests/cli/test_generative_bad_input.py
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import o2o
from o2o.cli.main import main
from tests.cli.refusals import assert_refusal, snapshot
from tests.cli.test_bad_input import BASE, COMMANDS, SMALL, _argv, _build_world

LONG = int(os.environ.get("O2O_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int):
    """``examples`` reproducible examples in the normal run; ``O2O_FUZZ_EXAMPLES`` fresh ones
    in a long run."""
    return settings(max_examples=LONG or examples, derandomize=not LONG, deadline=None,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------------------ the runner
class Zygote:
    """``o2o`` commands in children of one process that loaded o2o (fuzz_zygote.py)."""

    def __init__(self, err_dir: Path):
        src = Path(o2o.__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(Path(__file__).parents[2])])}
        self.err_dir = err_dir
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fuzz_zygote.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        ready = self.proc.stdout.readline()
        assert json.loads(ready)["ready"], ready

    def run(self, argv: list[str], cwd: Path, tmp: Path, timeout_s: float = 60) -> dict:
        request = {"argv": [str(a) for a in argv], "cwd": str(cwd), "tmp": str(tmp),
                   "tmp_err": str(self.err_dir), "timeout_s": timeout_s}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("fuzz-stderr"))
    yield z
    z.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """test_bad_input's world (a task log, data sets, models, broken files), and a finished
    tiny sweep of RATC and the bound."""
    w = _build_world(tmp_path_factory.mktemp("fuzz"))
    spec = w.work / "tiny.yaml"
    spec.write_text(spec.read_text() + "methods: [ratc, bound]\n")
    assert main(["sweep", str(spec), "--out", str(w.work / "sweep"), "--workers", "1", "--json"]) == 0
    return w


def outcome(zygote, world, argv, *, may_run: bool = False, timeout_s: float = 60) -> dict:
    """Run ``argv`` in a child; assert the promise: a one-line refusal that wrote nothing, or
    (``may_run``) a normal run. Never a traceback, a signal, a hang or another exit code."""
    argv = _fill(world, argv)
    before = snapshot(world.work, world.tmp)
    got = zygote.run(argv, world.work, world.tmp, timeout_s)
    err = got.get("stderr", "")
    assert not got.get("timed_out"), f"{argv}: still running after {timeout_s} s"
    assert "signal" not in got, f"{argv}: killed by signal {got.get('signal')}\n{err[-3000:]}"
    code = got["code"]
    if may_run and code == 0:
        assert "Traceback" not in err, err[-3000:]
        return got
    assert_refusal(code, err, argv)
    after = snapshot(world.work, world.tmp)
    added = sorted(set(after) - set(before))
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not added and not changed, f"{argv} wrote: added {added}, changed {changed}"
    return got


def _fill(world, argv) -> list[str]:
    """The ``{name}`` placeholders of the fixtures, leaving every other brace as it is (a
    generated value may hold some)."""
    names = {"{work}": str(world.work), "{tmp}": str(world.tmp)}
    for path in world.work.iterdir():
        names["{" + path.name.split(".")[0] + "}"] = str(path)
    out = []
    for arg in map(str, argv):
        for key, path in names.items():
            arg = arg.replace(key, path)
        out.append(arg)
    return out


# ------------------------------------------------------------------------------ argument values
def _options():
    """(command, option, action) of every option that takes a value."""
    for name, parser in sorted(COMMANDS.items()):
        for action in parser._actions:
            if action.option_strings and action.nargs != 0 and "--help" not in action.option_strings:
                yield name, action.option_strings[0], action


OPTIONS = list(_options())
COUNTS = [o for o in OPTIONS if hasattr(o[2].type, "maximum")]
FLOATS = [o for o in OPTIONS if o[2].type is float]
CHOICES = [o for o in OPTIONS if o[2].choices]


def _bad_count(action) -> st.SearchStrategy[str]:
    lo = int(action.type.__name__.split(">=")[1])
    hi = action.type.maximum
    return st.one_of(st.integers(hi + 1, 10**40).map(str), st.integers(-10**40, lo - 1).map(str),
                     st.sampled_from(["nan", "inf", "-inf", "1e9", "1.5", "", " ", "0x10", "ten",
                                      "1_000", "+-1", "9" * 5000]))


BAD_FLOATS = st.one_of(st.sampled_from(["nan", "-nan", "inf", "-inf", "1e999", "-1e999", "NaN",
                                        "soon", ""]),
                       st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False).map(repr))


@st.composite
def bad_arguments(draw) -> tuple[str, list[str]]:
    kind = draw(st.sampled_from(["count", "float", "choice", "unknown", "repeat"]))
    if kind == "count":
        command, opt, action = draw(st.sampled_from(COUNTS))
        return command, [opt, draw(_bad_count(action))]
    if kind == "float":
        command, opt, _ = draw(st.sampled_from(FLOATS))
        return command, [opt, draw(BAD_FLOATS)]
    if kind == "choice":
        command, opt, action = draw(st.sampled_from(CHOICES))
        value = draw(st.text(min_size=1, max_size=20).filter(lambda v: v not in action.choices
                                                             and not v.startswith("-")))
        return command, [opt, value]
    if kind == "unknown":
        command = draw(st.sampled_from(sorted(COMMANDS)))
        name = draw(st.from_regex(r"--[a-z][a-z-]{0,15}", fullmatch=True))
        known = COMMANDS[command]._option_string_actions
        if any(k.startswith(name) for k in known):   # argparse takes unambiguous prefixes
            name = "--zz-" + name[2:]
        return command, [name, "1"]
    command, extra = draw(st.sampled_from([
        ("ablation", ["--rung", "0", "--rung", "0"]),
        ("evaluate", ["--scheduler", "ratc"]),           # ratc is in the base already
        ("bench sweep", ["--workers", "1", "1"]),
    ]))
    return command, extra


@fuzz(60)
@given(case=bad_arguments())
def test_any_bad_argument_value_is_refused_in_one_line(case, zygote, world):
    command, extra = case
    outcome(zygote, world, _argv(command, extra))


# ------------------------------------------------------------------------------ YAML
def _deep(depth: int, style: str) -> str:
    if style == "list":
        return "[" * depth + "]" * depth
    if style == "map":
        return "{a: " * depth + "1" + "}" * depth
    return "".join(f"{'  ' * k}- \n" if k < depth - 1 else f"{'  ' * k}- 1\n" for k in range(depth))


@st.composite
def hostile_yaml(draw) -> tuple[str, bytes]:
    """(what is wrong, a YAML value) to be put where a value of a scenario field goes."""
    kind = draw(st.sampled_from(["deep", "aliases", "anchor", "duplicate", "not utf-8", "oversize"]))
    if kind == "deep":
        style = draw(st.sampled_from(["list", "map"]))
        return kind, _deep(draw(st.integers(33, 3000)), style).encode()
    if kind in ("aliases", "anchor"):
        width = draw(st.integers(1, 10))
        levels = draw(st.integers(1, 12))
        items = ", ".join(["x"] * width)
        text = f"&a0 [{items}]"
        if kind == "aliases":
            # nested sequences of aliases: width ** levels leaves once expanded
            parts = [f"&a0 [{items}]"]
            for k in range(1, levels):
                parts.append(f"&a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]")
            text = "[" + ", ".join(parts) + "]"
        return kind, text.encode()
    if kind == "duplicate":
        key = draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True))
        depth = draw(st.integers(0, 5))
        inner = f"{{{key}: 1, b_{key}: 2, {key}: 3}}"
        return kind, ("[" * depth + inner + "]" * depth).encode()
    if kind == "not utf-8":
        good = draw(st.sampled_from(["[0, 1]", "4", "{a: 1}", "'text'"]))
        bad = draw(st.sampled_from([b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xe9", b"\xed\xa0\x80"]))
        at = draw(st.integers(0, len(good)))
        return kind, good[:at].encode() + bad + good[at:].encode()
    return kind, ("'" + "x" * draw(st.integers(1_000_001, 1_100_000)) + "'").encode()


@fuzz(50)
@given(bad=hostile_yaml(), where=st.sampled_from(["scenario file", "sweep spec", "--set",
                                                  "--set-hparam"]))
def test_hostile_yaml_is_refused_before_it_expands(bad, where, zygote, world):
    kind, value = bad
    text = os.fsdecode(value)   # as the operating system hands a command line to Python
    if where in ("--set", "--set-hparam") and kind == "oversize":
        text = text[:20_000]    # a command line holds less than a file; still over the bound
    folder = world.tmp.parent / "yaml"
    folder.mkdir(exist_ok=True)
    path = folder / "input.yaml"
    if where == "scenario file":
        path.write_bytes(b"preset: paper-sim\nnodes: 4\nslots: 10\ncores: " + value + b"\n")
        argv = ["simulate", "--scenario", path, "--episodes", "1"]
    elif where == "sweep spec":
        spec = (world.work / "tiny.yaml").read_bytes()
        path.write_bytes(spec.replace(b"set: {nodes: 4, slots: 10}",
                                      b"set: {nodes: 4, slots: 10, cores: " + value + b"}"))
        argv = ["sweep", path, "--out", "{work}/yaml-sweep"]
    elif where == "--set":
        argv = ["simulate", *SMALL, "--episodes", "1", "--set", f"cores={text}"]
    else:
        argv = ["train", "online", *SMALL, "--from-scratch", "--episodes", "1", "--out",
                "{work}/yaml-model", "--set-hparam", f"hidden={text}"]
    got = outcome(zygote, world, argv, timeout_s=30)
    assert len(got["stderr"]) < 2_000, "a refusal is one short line"


# ------------------------------------------------------------------------------ corrupted files
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                        st.sampled_from(["NaN", "Infinity", "-Infinity", 1e308, -1.0, 2.0]),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10),
                        st.lists(st.integers(-3, 3), max_size=3),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _json_text(value) -> str:
    if value in ("NaN", "Infinity", "-Infinity"):
        return value
    return json.dumps(value)


@st.composite
def corrupted_dataset(draw):
    """(array, how, row, value): an array deleted, a row short, of another shape, text, or
    one value changed (which may be a valid value: the run may then go on)."""
    keys = ["observations", "actions", "rewards", "next_observations", "terminals", "action_masks",
            "next_action_masks", "obs_layout", "reward_credit"]
    key = draw(st.sampled_from(keys))
    how = draw(st.sampled_from(["delete", "drop a row", "bad value", "wrong shape", "text"]))
    if key in ("obs_layout", "reward_credit"):
        how = "text"    # optional (a user's own data set may leave them out), but not any text
    row = draw(st.integers(0, 10_000))
    value = draw(st.sampled_from([np.nan, np.inf, -np.inf, -1e30, 1e30, -7, 99]))
    return key, how, row, value


def _corrupt_dataset(src: Path, dst: Path, key: str, how: str, row: int, value) -> None:
    with np.load(src, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    array = data[key]
    if how == "delete":
        del data[key]
    elif how == "drop a row" and array.ndim:
        data[key] = array[:-1]
    elif how == "wrong shape" and array.ndim:
        data[key] = array.reshape(len(array), -1)[:, :1].repeat(2, axis=1) if array.ndim == 1 \
            else array[:, :-1]
    elif how == "text" or not array.ndim:
        data[key] = np.array(["these are not numbers"] * max(1, len(array) if array.ndim else 1))
    else:
        spoiled = array.astype(np.float64)
        spoiled.reshape(len(array), -1)[row % len(array), 0] = value
        data[key] = spoiled
    np.savez(dst, **data)


@fuzz(15)
@given(corruption=corrupted_dataset())
def test_a_data_set_with_one_field_corrupted_is_refused(corruption, zygote, world):
    key, how, row, value = corruption
    bad = world.tmp.parent / "bad.npz"
    _corrupt_dataset(world.work / "dataset.npz", bad, key, how, row, value)
    try:
        outcome(zygote, world, ["train", "offline", *SMALL, "--settings", "paper", "--dataset", bad,
                                "--out", "{work}/m", "--steps", "1", "--eval-episodes", "0"],
                may_run=how == "bad value" and key == "rewards" and math.isfinite(value))
    finally:
        bad.unlink()
        shutil.rmtree(world.work / "m", ignore_errors=True)


def _leaf_paths(value, prefix=()):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaf_paths(v, (*prefix, k))
    elif isinstance(value, list) and value:
        for k, v in enumerate(value[:3]):
            yield from _leaf_paths(v, (*prefix, k))
    else:
        yield prefix


@fuzz(25)
@given(data=st.data())
def test_a_model_folder_with_one_manifest_field_corrupted_is_refused_or_runs(data, zygote, world):
    manifest = json.loads((world.work / "model" / "manifest.json").read_text())
    paths = sorted(_leaf_paths(manifest), key=str)
    path = data.draw(st.sampled_from(paths))
    value = data.draw(JSON_VALUES)
    spoiled = json.loads(json.dumps(manifest))
    target = spoiled
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value if value not in ("NaN", "Infinity", "-Infinity") else float(value)
    model = world.tmp.parent / "model"
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(world.work / "model", model)
    (model / "manifest.json").write_text(json.dumps(spoiled))
    outcome(zygote, world, ["evaluate", *SMALL, "--model", model, "--episodes", "1"], may_run=True)


def _update(conn, sql: str, values) -> None:
    """The corruption, or none where SQLite itself refuses it (a key made equal to another
    row's, an integer past 64 bits): such a database cannot exist."""
    try:
        conn.execute(sql, values)
    except (sqlite3.IntegrityError, OverflowError):
        reject()


RESULT_COLUMNS = {"point": JSON_VALUES, "method": st.text(max_size=12), "seed": JSON_VALUES,
                  "point_value": st.text(max_size=12), "rates": JSON_VALUES, "info": JSON_VALUES,
                  "seconds": JSON_VALUES}


@fuzz(20)
@given(column=st.sampled_from(sorted(RESULT_COLUMNS)), data=st.data())
def test_a_results_database_with_one_cell_corrupted_is_refused_or_reported(column, data, zygote, world):
    value = data.draw(RESULT_COLUMNS[column])
    stored = value if column in ("method", "point_value") else _json_text(value)
    if column in ("point", "seed", "seconds") and isinstance(value, (int, float)) and \
            not isinstance(value, bool) and not (isinstance(value, float) and not math.isfinite(value)):
        stored = value        # a number in a number column
    out = world.tmp.parent / "sweep"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(world.work / "sweep", out)
    with sqlite3.connect(out / "results.db") as conn:
        rowid = data.draw(st.sampled_from([r[0] for r in conn.execute("SELECT rowid FROM cells")]))
        _update(conn, f"UPDATE cells SET {column} = ? WHERE rowid = ?", (stored, rowid))
    conn.close()
    # the report goes to out: watched like the working folder
    before = snapshot(out)
    got = outcome(zygote, world, ["sweep", "{tiny}", "--out", out, "--report"], may_run=True)
    if got["code"] == 2:
        assert "cell (point" in got["stderr"] or "results database" in got["stderr"]
        assert snapshot(out) == before, "a refused report wrote files"


TASK_COLUMNS = [("tasks", c) for c in ("slot", "source", "status", "destination", "action",
                                       "action_prob", "size_bytes", "deadline_s", "end_s",
                                       "exec_len", "recv_len", "peer_overloaded")] + \
               [("runs", c) for c in ("config_json", "nodes", "slots", "slot_s", "obs_layout",
                                      "status", "network_seed")] + \
               [("episodes", c) for c in ("episode_seed", "episode_index")] + \
               [("nodes", c) for c in ("cores", "capacity_hz")] + [("links", "rate_Bps")]


@fuzz(15)
@given(where=st.sampled_from(TASK_COLUMNS), value=JSON_VALUES, command=st.sampled_from(["summary", "export"]),
       data=st.data())
def test_a_task_log_with_one_field_corrupted_is_refused_or_read(where, value, command, data, zygote, world):
    table, column = where
    log = world.tmp.parent / "log.db"
    shutil.copy(world.work / "log.db", log)
    stored = value if isinstance(value, (int, float, str)) and not isinstance(value, bool) \
        else _json_text(value)
    with sqlite3.connect(log) as conn:
        rowids = [r[0] for r in conn.execute(f"SELECT rowid FROM {table}")]
        rowid = data.draw(st.sampled_from(rowids))
        _update(conn, f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (stored, rowid))
    conn.close()
    try:
        if command == "summary":
            outcome(zygote, world, ["logs", "summary", "--db", log], may_run=True)
        else:
            out = world.tmp.parent / "export.npz"
            got = outcome(zygote, world, ["dataset", "export", "--db", log, "--out", out], may_run=True)
            if got["code"] == 0:
                out.unlink()
    finally:
        log.unlink()


def test_every_command_is_reached_by_the_generated_arguments():
    """The argument strategies reach every command that has a counted, float or choice option,
    and the bounds they test are the documented ones."""
    reached = {c for c, _, _ in COUNTS + FLOATS + CHOICES}
    # (logs summary, report and marl compare take only paths and flags)
    assert reached >= set(BASE) - {"logs summary", "report", "marl compare"}, sorted(set(BASE) - reached)
    assert all(isinstance(a.type.maximum, int) for _, _, a in COUNTS)
    assert {opt for _, opt, _ in COUNTS} >= {"--episodes", "--seeds", "--workers", "--eval-episodes",
                                               "--log-episodes", "--seed", "--threads"}
