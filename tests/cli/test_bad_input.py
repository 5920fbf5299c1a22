"""Every command against a table of bad inputs.

Each case runs ``o2o.cli.main.main`` with a bad input and asserts what a user must see: exit code
2, exactly one line on stderr (``o2o: error: ...``, saying what is wrong), no traceback, and
nothing changed on disk: every file and folder under the working folder (which holds the
fixtures) and under the temporary folder (``tempfile`` and ``$TMPDIR`` point there) is listed
and checksummed before and after.

The table has two parts: cases made for every command from its parser (every counted or seeded
option given 0, -1 or text, every option with choices given a wrong one, every float given NaN
and infinity, the scenario, database, model, data set and output options given broken ones), and
cases written by hand. A new command gets the first part as soon as it is registered; it only
needs valid arguments in ``BASE`` (a test says so if they are missing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from o2o.cli.main import build_parser, main
from o2o.logs.schema import SCHEMA_VERSION
from o2o.logs.suite import build_suite, suite_spec
from o2o.models import WEIGHTS, expected_shapes, save_model
from o2o.testbed import wire
from tests.cli.refusals import snapshot

SMALL = ["--set", "nodes=4", "--set", "slots=10"]
TESTBED_SMALL = ["--nodes", "2", "--set", "slots=2", "--set", "slot_s=0.05", "--set", "deadline_s=0.3",
                 "--episodes", "1"]

TINY_SWEEP = """\
name: tiny
scenario: paper-sim
set: {nodes: 4, slots: 10}
sweep: {field: arrival_prob, values: [[0, 0.5], [0, 1.0]]}
plans:
  quick: {seeds: 1, log_episodes: 2, offline_steps: 2, offline_points: 1, online_episodes: 2,
          online_eval_every: 2, curve_episodes: 1, eval_episodes: 2}
  full: {seeds: 1, log_episodes: 2, offline_steps: 2, offline_points: 1, online_episodes: 2,
         online_eval_every: 2, curve_episodes: 1, eval_episodes: 2}
"""

# Valid arguments of every command, as small as a real run of it would be: a case adds one bad
# input to these, so the refusal is the bad input's (and an input wrongly accepted costs little).
BASE: dict[str, list[str]] = {
    "simulate": [*SMALL, "--episodes", "1"],
    "collect": [*SMALL, "--episodes", "1", "--db", "{work}/new.db"],
    "logs summary": ["--db", "{log}"],
    "dataset export": ["--db", "{log}", "--out", "{work}/out.npz"],
    "dataset build": ["--suite", "tiny", "--out", "{work}/newsuite"],
    "dataset unpack": ["--suite", "{suite}", "--behaviour", "ratc", "--out", "{work}/u.npz"],
    "dataset bench": ["--suite", "{suite}", "--behaviour", "ratc", "--method", "discrete_bc",
                      "--steps", "1"],
    "dataset minari": ["--suite", "{suite}", "--behaviour", "ratc", "--dataset-id", "o2o/x/y-v0"],
    "train offline": [*SMALL, "--dataset", "{dataset}", "--out", "{work}/model", "--steps", "1",
                      "--eval-episodes", "0"],
    "train online": [*SMALL, "--model", "{model}", "--episodes", "1", "--out", "{work}/model",
                     "--eval-episodes", "0"],
    "train generalist": ["--set", "slots=10", "--nodes", "4", "5", "--episodes", "1", "--out", "{work}/model"],
    "evaluate": [*SMALL, "--scheduler", "ratc", "--episodes", "1"],
    "run": [*SMALL, "--quick", "--out", "{work}/run", "--seeds", "1", "--workers", "1",
            "--log-episodes", "1", "--offline-steps", "1", "--online-episodes", "1",
            "--eval-episodes", "1"],
    "testbed run": [*TESTBED_SMALL, "--db", "{work}/tb.db"],
    "testbed compare": [*TESTBED_SMALL, "--db", "{work}/tb.db"],
    "testbed controller": [*TESTBED_SMALL, "--db", "{work}/tb.db", "--listen", "127.0.0.1:0",
                           "--wait-nodes", "1", "--token-file", "{token}"],
    "testbed trainer": ["--db", "{log}", "--run", "1", "--store", "{work}/store", "--steps", "1"],
    "testbed o2o": [*TESTBED_SMALL, "--db", "{work}/tb.db", "--store", "{work}/store",
                    "--collect-episodes", "1", "--offline-steps", "1", "--online-rounds", "0"],
    "testbed node": ["--controller", "127.0.0.1:9", "--connect-wait", "0.5", "--token-file", "{token}"],
    "bench sim": [*SMALL, "--batch", "2", "--repeats", "1"],
    "bench yardsticks": [*SMALL, "--episodes", "1"],
    "bench logs": [*SMALL, "--episodes", "1", "--repeats", "1"],
    "bench actor": [*SMALL, "--model", "{model}", "--decisions", "1", "--repeats", "1"],
    "bench testbed": [*TESTBED_SMALL],
    "bench learn": [*SMALL, "--offline-steps", "1"],
    "report": ["--run", "{finished}"],
    "tune": [*SMALL, "--scheduler", "spread", "--episodes", "1", "--out", "{work}/tuned.json"],
    "probes-curve": [*SMALL, "--k", "1", "--quick", "--out", "{work}/curve", "--seeds", "1", "--workers", "1",
                     "--log-episodes", "1", "--offline-steps", "1", "--online-episodes", "1",
                     "--eval-episodes", "1", "--tune-episodes", "1"],
    "marl compare": ["--run-results", "{finished}/results.json", "--marl", "{work}/nomarl"],
    "marl train": [*SMALL, "--algorithm", "mappo", "--out", "{work}/marl", "--lr-grid", "0.0005",
             "--eval-episodes", "1", "--validation-episodes", "1"],
    # A sweep: the tiny spec of the fixtures (2 points of 4 nodes and 10 slots, one seed).
    "sweep": ["{tiny}", "--out", "{work}/sweep", "--workers", "1"],
    "bench sweep": ["{tiny}", "--workers", "1"],
    # A figure is minutes even at its quick plan: its valid base redraws a report (a case wrongly
    # accepted then fails on the missing database with another message than the case expects).
    "figure": ["fig5a", "--out", "{work}/figure", "--report"],
    "ablation": [*SMALL, "--quick", "--out", "{work}/ablation", "--seeds", "1", "--workers", "1",
                 "--log-episodes", "1", "--offline-steps", "1", "--online-episodes", "1",
                 "--eval-episodes", "1", "--rung", "0"],
}

# Options whose --db must already hold a task log (the others create one if it is missing).
READS_DB = {"logs summary", "dataset export", "testbed trainer"}


# ------------------------------------------------------------------------------ the fixtures
@dataclass
class World:
    """A working folder with a task log, data sets, models and broken files, and an empty
    temporary folder."""

    work: Path
    tmp: Path

    def fill(self, argv: list[str]) -> list[str]:
        """``{name}`` placeholders: the folders, and the fixture files by their stem."""
        names = {"work": self.work, "tmp": self.tmp}
        names.update((name.split(".")[0], self.work / name) for name in FIXTURES)
        return [a.format(**{k: str(v) for k, v in names.items()}) for a in argv]


# The fixture files and folders of the working folder (a case names one as {stem}).
FIXTURES = ("log.db", "text.txt", "foreign.db", "empty.db", "future.db", "dataset.npz",
            "nandata.npz", "infdata.npz", "range.npz", "zero.npz", "cut.npz", "notzip.npz",
            "three.npz", "folder.npz", "model", "nanmodel", "threemodel", "badmanifest",
            "emptystore", "goodstore", "nanstore", "threestore", "badstore", "token", "emptytoken", "latin1.yaml", "broken.yaml", "list.yaml",
            "infscenario.yaml", "nanscenario.yaml", "outside.yaml", "blank.yaml", "finished",
            "tiny.yaml", "nomethods.yaml", "badfield.yaml", "suite")
assert len({name.split(".")[0] for name in FIXTURES}) == len(FIXTURES)


def _random_model(folder: Path, nodes: int) -> None:
    rng = np.random.default_rng(nodes)
    arrays = {k: rng.normal(size=s).astype(np.float32) * 0.1
              for k, s in expected_shapes(nodes, (8,)).items()}
    save_model(str(folder), arrays, nodes=nodes, hidden=(8,), reward_credit="slot",
               reward_stats={"mean": 0.0, "std": 1.0})


def _nan_model(folder: Path, nodes: int = 4) -> None:
    """A model whose weights hold NaN, its checksum right (as a diverged run would write it if
    nothing stopped it)."""
    from safetensors.numpy import save

    _random_model(folder, nodes)
    manifest = json.loads((folder / "manifest.json").read_text())
    arrays = {k: np.full(s, np.nan, dtype=np.float32) for k, s in expected_shapes(nodes, (8,)).items()}
    payload = save(arrays)
    (folder / WEIGHTS).write_bytes(payload)
    manifest["sha256"] = hashlib.sha256(payload).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _changed_dataset(src: Path, dst: Path, change) -> None:
    with np.load(src, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    change(data)
    np.savez(dst, **data)


def _build_world(root: Path) -> World:
    work, tmp = root / "work", root / "tmp"
    work.mkdir()
    tmp.mkdir()
    log = work / "log.db"
    assert main(["collect", *SMALL, "--episodes", "2", "--db", str(log), "--json"]) == 0
    assert main(["dataset", "export", "--db", str(log), "--out", str(work / "dataset.npz"),
                 "--json"]) == 0
    (work / "text.txt").write_text("these are my notes, not a database\n")
    with sqlite3.connect(work / "foreign.db") as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
    conn.close()
    (work / "empty.db").write_bytes(b"")
    future = work / "future.db"
    assert main(["collect", *SMALL, "--episodes", "1", "--db", str(future), "--json"]) == 0
    with sqlite3.connect(future) as conn:
        conn.execute(f"UPDATE o2o_schema SET version = {SCHEMA_VERSION + 1}")
    conn.close()
    good = work / "dataset.npz"
    _changed_dataset(good, work / "nandata.npz", lambda d: d["rewards"].__setitem__(0, np.nan))
    _changed_dataset(good, work / "infdata.npz", lambda d: d["observations"].__setitem__((0, 0), np.inf))
    _changed_dataset(good, work / "range.npz", lambda d: d["observations"].__setitem__((0, 0), 7.0))
    (work / "zero.npz").write_bytes(b"")
    (work / "cut.npz").write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    (work / "notzip.npz").write_text("observations,actions\n0.1,2\n")
    log3 = root / "three.db"
    assert main(["collect", "--set", "nodes=3", "--set", "slots=10", "--episodes", "1",
                 "--db", str(log3), "--json"]) == 0
    assert main(["dataset", "export", "--db", str(log3), "--out", str(work / "three.npz"),
                 "--json"]) == 0
    log3.unlink()
    _random_model(work / "model", 4)
    _nan_model(work / "nanmodel")
    _random_model(work / "threemodel", 3)
    (work / "badmanifest").mkdir()
    (work / "badmanifest" / "manifest.json").write_text("{not json")
    (work / "emptystore").mkdir()
    # Model stores (folders of versions) for the testbed's --model and --store.
    _random_model(work / "goodstore" / "v000001", 4)
    _nan_model(work / "nanstore" / "v000001", 2)  # the testbed cases run 2 nodes
    _random_model(work / "threestore" / "v000001", 3)
    (work / "badstore" / "v000001").mkdir(parents=True)
    (work / "badstore" / "v000001" / "manifest.json").write_text("{not json")
    (work / "token").write_text("a-testbed-token-for-the-bad-input-tests\n")
    (work / "emptytoken").write_text("\n")
    (work / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (work / "broken.yaml").write_text("preset: paper-sim\nnodes: [1, 2\n")
    (work / "list.yaml").write_text("- just\n- a list\n")
    (work / "infscenario.yaml").write_text("preset: paper-sim\ncore_hz: .inf\n")
    (work / "nanscenario.yaml").write_text("preset: paper-sim\narrival_prob: [0, .nan]\n")
    (work / "outside.yaml").write_text("preset: paper-sim\narrival_prob: [0, 1.5]\n")
    (work / "blank.yaml").write_text("")
    (work / "folder.npz").mkdir()
    (work / "tiny.yaml").write_text(TINY_SWEEP)
    (work / "nomethods.yaml").write_text(TINY_SWEEP + "methods: []\n")
    (work / "badfield.yaml").write_text(TINY_SWEEP.replace("field: arrival_prob", "field: colour"))
    (work / "finished").mkdir()
    (work / "finished" / "results.json").write_text("{}")
    build_suite(suite_spec("tiny"), work / "suite")
    return World(work, tmp)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return _build_world(tmp_path_factory.mktemp("bad-input"))


@pytest.fixture
def in_world(world, monkeypatch):
    monkeypatch.chdir(world.work)
    monkeypatch.setattr(tempfile, "tempdir", str(world.tmp))
    monkeypatch.setenv("TMPDIR", str(world.tmp))
    monkeypatch.delenv(wire.TOKEN_ENV, raising=False)
    return world


def refuse(world: World, argv: list[str], capfd, expect: str = "") -> str:
    """Run ``o2o argv``; assert exit 2, one line on stderr that says ``expect`` (or one of its
    ``|``-separated alternatives), and nothing changed."""
    before = snapshot(world.work, world.tmp)
    capfd.readouterr()
    code = main(argv)  # an exception escaping here is a traceback a user would see
    out, err = capfd.readouterr()
    assert code == 2, f"exit {code} for {argv}\nstdout: {out}\nstderr: {err}"
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("o2o: error: "), f"{argv}: stderr is\n{err}"
    assert "Traceback" not in err
    assert any(e.lower() in err.lower() for e in expect.split("|")), f"{argv}: expected {expect!r} in {err!r}"
    after = snapshot(world.work, world.tmp)
    added = sorted(set(after) - set(before))
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not added and not changed, f"{argv} changed files: added {added}, changed or removed {changed}"
    return err


# ------------------------------------------------------------------------------ the table
def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
    for action in subs:
        for name, child in action.choices.items():
            yield from leaf_commands(child, (*path, name))


COMMANDS = dict(leaf_commands(build_parser()))

SCENARIO_FILES = [("{latin1}", "not UTF-8"), ("{broken}", "line 3 column 1"),
                  ("{list}", "mapping"), ("{infscenario}", "core_hz: Input should be a finite number"),
                  ("{nanscenario}", "arrival_prob.1: Input should be a finite number"),
                  ("{outside}", "arrival_prob"), ("{blank}", "mapping"),
                  ("no-such-scenario", "neither a preset"), ("{work}", "neither a preset")]
OVERRIDES = [("nodes", "key=value"), ("slots=.inf", "slots"), ("slot_s=.nan", "slot_s"),
             ("slots=-1", "slots"), ("nodes=100000", "1024"), ("slots=10000000", "100000"),
             ("colour=blue", "colour"), ("deadline_s=[1, 2, 3]", "deadline_s"),
             ("arrival_prob=[0, 1e999]", "arrival_prob"), ("core_hz=-3e9", "core_hz"),
             ("nodes: [1", "key=value")]
DB_ANY = [("{text}", "not a SQLite database"), ("{foreign}", "not an o2o task log"),
          ("{future}", f"schema version {SCHEMA_VERSION + 1}"), ("{work}", "is a directory"),
          ("oracle://scott:tiger@db/x", "unsupported database"),
          ("postgresql+psycopg://o2o:pw@127.0.0.1:9/none", "cannot open task log"),
          ("postgresql+psycopg://o2o:pw@host:port/x", "cannot read database URL"),
          ]
DB_CREATE = [("{text}/x.db", "is a file, not a folder")]
# Commands whose --db is a sweep's results database, not a task log.
RESULTS_DB = {"figure", "sweep"}
DB_RESULTS = [("{text}", "not a SQLite database"), ("{foreign}", "not an o2o sweep results database"),
              ("{future}", "not an o2o sweep results database"), ("{work}", "is a folder"),
              ("oracle://scott:tiger@db/x", "unsupported database"),
              ("postgresql+psycopg://o2o:pw@127.0.0.1:9/none", "cannot open results database"),
              ("postgresql+psycopg://o2o:pw@host:port/x", "cannot read database URL"),
              # the base of `figure` only redraws a report: a database must be there already
              ("{text}/x.db", "is a file, not a folder|no results database")]
DB_READ = [("{work}/missing.db", "does not exist"), ("{empty}", "holds no task log"),
           ("{text}/x.db", "does not exist")]
MODELS = [("{work}/no-model", "manifest.json is missing"), ("{emptystore}", "manifest.json is missing"),
          ("{nanmodel}", "NaN or infinite"), ("{threemodel}", "is for 3 nodes"),
          ("{badmanifest}", "not valid JSON"), ("foo://m", "Protocol not known")]
STORES = [("{work}/no-model", "no versions yet|manifest.json is missing"),
          ("{emptystore}", "no versions yet|manifest.json is missing"),
          ("{nanstore}", "NaN or infinite"), ("{threestore}", "is for 3 nodes"),
          ("{badstore}", "not valid JSON"), ("foo://m", "Protocol not known")]
DATASETS = [("{work}/missing.npz", "does not exist"), ("{text}", "not a .npz data set"),
            ("{notzip}", "not a .npz data set"), ("{zero}", "not a .npz data set"),
            ("{cut}", "damaged"), ("{nandata}", "NaN"), ("{infdata}", "inf"), ("{range}", "[0, 1]"),
            ("{three}", "3 nodes"), ("{work}", "does not exist")]
NUMBERS = {"integer >= 1": [("0", "at least 1"), ("-5", "at least 1"), ("ten", "whole number"),
                            ("1.5", "whole number")],
           "integer >= 0": [("-1", "at least 0"), ("x", "whole number")],
           "integer >= 2": [("1", "at least 2")],
           "float": [("nan", "finite"), ("inf", "finite"), ("-1", ""), ("soon", "invalid float")],
           "int": [("-1", "-1"), ("one", "invalid int")]}
# Output options: where the command writes (a file, or a folder of files).
OUTPUT_FILES = {("dataset export", "--out"), ("dataset unpack", "--out"), ("tune", "--out")}
OUTPUT_FOLDERS = {("probes-curve", "--out"), ("dataset build", "--out"), ("train offline", "--out"), ("train online", "--out"), ("run", "--out"),
                  ("train offline", "--log-dir"), ("train online", "--log-dir"),
                  ("train generalist", "--out"), ("train generalist", "--log-dir"),
                  ("testbed run", "--log-dir"), ("testbed compare", "--log-dir"),
                  ("testbed controller", "--log-dir"), ("testbed o2o", "--log-dir"),
                  ("bench testbed", "--log-dir"), ("testbed trainer", "--store"),
                  ("testbed o2o", "--store")}


def _option_type(action) -> str:
    return getattr(action.type, "__name__", "") if action.type else ""


def generated_cases():
    """(command, extra argv, expected message) made from every command's parser."""
    for name, parser in COMMANDS.items():
        yield name, ["--no-such-option"], "unrecognized arguments"
        required = [a for a in parser._actions if a.required and a.option_strings]
        if required:
            yield name, ["--drop-base"], "the following arguments are required"
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            opt = action.option_strings[0]
            kind = _option_type(action)
            times = action.nargs if isinstance(action.nargs, int) else 1  # e.g. --nodes-range LO HI
            for value, expect in NUMBERS.get(kind, []):
                yield name, [opt, *[value] * times], expect or opt
            if action.choices:
                yield name, [opt, "nonsense"], "invalid choice"
            if opt == "--scenario":
                for value, expect in SCENARIO_FILES:
                    yield name, [opt, value], expect
            if opt == "--set":
                for value, expect in OVERRIDES:
                    if value.startswith("nodes=") and "--nodes" in parser._option_string_actions:
                        value = value.replace("nodes=", "queue_coef=-")  # --nodes sets N there
                        expect = "queue_coef"
                    yield name, [opt, value], expect
            if opt == "--db":
                cases = DB_RESULTS if name in RESULTS_DB else \
                    DB_ANY + (DB_READ if name in READS_DB else DB_CREATE)
                for value, expect in cases:
                    yield name, [opt, value], expect
            if opt == "--model":
                testbed = name.startswith("testbed")  # a model store, for --scheduler drl
                drl = ["--scheduler", "drl"] if testbed else []
                for value, expect in STORES if testbed else MODELS:
                    yield name, [*drl, opt, value], expect
            if opt == "--dataset":
                for value, expect in DATASETS:
                    yield name, [opt, value], expect
            if (name, opt) in OUTPUT_FILES:
                yield name, [opt, "{folder}"], "is a folder"
                yield name, [opt, "{text}/out.npz"], "is a file, not a folder"
            if (name, opt) in OUTPUT_FOLDERS:
                yield name, [opt, "{text}"], "is a file, not a folder"
                yield name, [opt, "{text}/below"], "is a file, not a folder"
            if opt in ("--listen", "--controller", "--notify"):
                for value in ("localhost", "127.0.0.1:port", "127.0.0.1:99999"):
                    yield name, [opt, value], "HOST:PORT"
            if opt == "--token-file":
                notify = ["--notify", "127.0.0.1:9"] if "--notify" in parser._option_string_actions else []
                yield name, [*notify, opt, "{work}/no-token"], "cannot read the token file"
                yield name, [*notify, opt, "{latin1}"], "not UTF-8"
                yield name, [*notify, opt, "{emptytoken}"], "at least 16 characters"
            if opt in ("--set-hparam", "--set-offline", "--set-online"):
                for value, expect in (("lr", "key=value"), ("no_such_setting=1", "no_such_setting"),
                                      ("gamma=.nan", "gamma"), ("gamma=.inf", "gamma")):
                    yield name, [opt, value], expect


HUGE = ["--set", "nodes=1024", "--set", "slots=100000"]
HAND_WRITTEN = [
    # Tuning sees validation episodes only; a tuned file must be one.
    ("tune", ["--seed", "1000000"], "validation episode seeds only"),
    ("tune", ["--seed", "0"], "validation episode seeds only"),
    ("tune", ["--seed", "999999", "--episodes", "2"], "validation episode seeds only"),
    # A probe budget k outside 1..N-1, or given to a rule without one.
    ("tune", ["--scheduler", "slack-reliable-k", "--probes", "9"], "N - 1"),
    ("tune", ["--probes", "2"], "probe budget of slack-reliable-k"),
    ("probes-curve", ["--k", "0"], "N - 1"),
    ("probes-curve", ["--k", "1,99"], "N - 1"),
    ("probes-curve", ["--k", "1,1"], "repeats"),
    ("probes-curve", ["--k", "two"], "whole numbers"),
    ("probes-curve", ["--k", ","], "at least one k"),
    ("simulate", ["--scheduler", "slack-reliable-k", "--set", "nodes=2"], "N - 1 = 1"),
    *((command, ["--tuned", value], expect) for command in ("simulate", "run", "evaluate", "sweep", "figure")
      for value, expect in (("{text}", "not a tuned file"), ("{work}/missing.json", "cannot read tuned file"),
                            ("{foreign}", "not a tuned file"))),
    ("simulate", ["--scheduler", "best"], "unknown scheduler"),
    ("train generalist", ["--nodes", "5", "4"], "LO <= HI"),
    ("train generalist", ["--network-seeds", "0", "5"], "kept for evaluation"),
    ("train generalist", ["--arrival-max", "0.6", "1.5"], "arrival_prob"),
    ("simulate", ["--batch-size", "0"], "--batch-size"),
    ("simulate", ["--seed", "-1"], "--seed"),
    ("simulate", ["--network-seed", "-1"], "--network-seed"),
    ("collect", ["--scheduler", "drl"], "not drl; to log a model's tasks run it on the testbed"),
    ("collect", ["--db", ""], "--db is empty"),
    ("dataset export", ["--run", "7"], "no run 7"),
    ("dataset export", ["--db", "{log}", "--reward-credit", "later"], "invalid choice"),
    ("train online", ["--from-scratch"], "either --model"),
    ("train online", ["--drop-base", "--out", "{work}/m", "--episodes", "1"], "either --model"),
    ("evaluate", ["--drop-base"], "give at least one --model"),
    ("evaluate", ["--model", "{model}", "--name", "a", "--name", "b"], "2 --name values for 1 --model"),
    ("evaluate", ["--scheduler", "ratc"], "twice"),
    ("evaluate", ["--model", "{model}", "--name", "ratc"], "twice"),
    ("evaluate", ["--scheduler", "best"], "unknown scheduler"),
    ("run", ["--out", "{finished}"], "already holds a finished run"),
    ("report", [], "is not the results file of a finished 'o2o run'"),
    ("report", ["--run", "{work}"], "holds no finished run"),
    ("report", ["--run", "{work}/nowhere"], "no such folder"),
    ("ablation", ["--rung", "99"], "--rung must lie in"),
    ("run", ["--marl", "{work}/nowhere"], "holds no 'o2o marl' result"),
    ("report", ["--marl", "{work}"], "holds no 'o2o marl' result"),
    ("marl train", ["--lr-grid", "fast"], "--lr-grid"),
    ("marl train", ["--lr-grid", "0.1,2"], "--lr-grid"),
    ("marl train", ["--algorithm", "dqn"], "invalid choice"),
    ("marl compare", ["--run-results", "{text}"], "not the results file of a finished 'o2o run'"),
    ("marl compare", ["--run-results", "{finished}/results.json"], "not the results file of a finished"),
    ("marl compare", ["--run-results", "{work}/missing.json"], "not the results file of a finished"),
    ("dataset minari", ["--dataset-id", "o2o/x/y"], "Minari needs the -vVERSION"),
    ("dataset minari", ["--dataset-id", "o2o/x y-v0"], "is not a Minari id"),
    ("testbed run", ["--scheduler", "drl"], "needs --model"),
    ("testbed run", ["--scheduler", "central"], "cannot run on the decentralized testbed"),
    ("testbed run", ["--kill-node", "7@1"], "node 7 does not exist"),
    ("testbed run", ["--heartbeat-timeout", "0.01"], "--heartbeat-timeout longer"),
    ("testbed run", ["--nodes", "100000"], "1024"),
    ("testbed compare", ["--scheduler", "drl", "--model", "{threemodel}"], "is for 3 nodes"),
    ("testbed controller", ["--kill-node", "1@1"], "unrecognized arguments"),
    ("testbed trainer", ["--run", "99"], "no run [99]"),
    ("testbed trainer", ["--mode", "online", "--run", "1"], "model store"),
    ("testbed o2o", ["--store", "{goodstore}"], "already holds versions"),
    ("testbed o2o", ["--baseline", "central"], "cannot run on the decentralized testbed"),
    ("testbed node", ["--index", "-3"], "--index must be >= 0"),
    ("testbed node", ["--token-file", ""], "no testbed token"),
    ("bench actor", ["--model", "{threemodel}"], "is for 3 nodes"),
    ("figure", ["--drop-base", "fig9"], "fig9"),
    ("figure", ["--drop-base", "fig5a", "--executor", "local", "--address", "auto", "--out", "{work}/f"],
     "--address"),
    ("figure", ["--out", "{text}"], "not a folder|exists|no results database"),
    ("sweep", ["--drop-base", "{work}/missing.yaml"], "missing.yaml"),
    ("sweep", ["--drop-base", "{broken}"], "yaml"),
    ("sweep", ["--drop-base", "{list}"], "mapping|spec"),
    ("sweep", ["--drop-base", "{nomethods}", "--out", "{work}/s"], "methods is empty"),
    ("sweep", ["--drop-base", "{badfield}", "--out", "{work}/s"], "not a scenario field"),
    ("sweep", ["--plan", "huge"], "invalid choice"),
    ("bench sweep", ["--drop-base", "fig9"], "fig9"),
    ("bench sweep", ["--drop-base", "{work}/missing.yaml"], "missing.yaml"),
    ("bench sweep", ["--drop-base", "{badfield}"], "not a scenario field"),
    ("bench sweep", ["--workers", "0"], "--workers"),
    ("bench sweep", ["--workers", "1", "1"], "--workers"),
    ("bench logs", ["--db", "{foreign}"], "not an o2o task log"),
    # Sizes the scenario allows but no machine holds (terabytes): refused before anything is
    # allocated, saying the memory needed and what to change.
    *((command, [*HUGE, *more], "of memory") for command, more in (
        ("simulate", ["--episodes", "64"]), ("collect", ["--episodes", "64", "--batch-size", "64"]),
        ("bench sim", ["--batch", "1024"]), ("bench logs", ["--episodes", "64"]), ("run", []),
        ("evaluate", ["--episodes", "64"]), ("train online", []),
        ("train offline", ["--eval-episodes", "64"]))),
    ("dataset build", ["--out", "{suite}"], "not empty"),
    *((command, more, expect) for command in ("dataset unpack", "dataset bench", "dataset minari")
      for more, expect in ((["--suite", "{work}/missing"], "not a data-set suite"),
                           (["--suite", "{text}"], "not a data-set suite"),
                           (["--behaviour", "esf"], "no behaviour 'esf'"),
                           (["--load", "heavy"], "no network seed 0 at load 'heavy'"),
                           (["--network-seed", "5"], "no network seed 5"))),
    ("dataset bench", ["--method", "dqn"], "unknown method 'dqn'"),
    ("train online", ["--set-hparam", "entropy_coef=.inf"], "entropy_coef"),
    ("train offline", ["--set-hparam", "lr=.nan"], "lr"),
]

ALL_CASES = [*generated_cases(), *HAND_WRITTEN]


def _argv(command: str, extra: list[str]) -> list[str]:
    if extra[:1] == ["--drop-base"]:
        return [*command.split(), *extra[1:]]
    return [*command.split(), *BASE.get(command, []), *extra]


def _case_id(case) -> str:
    command, extra, _ = case
    return f"{command}: {' '.join(extra)}"


@pytest.mark.parametrize("case", ALL_CASES, ids=[_case_id(c) for c in ALL_CASES])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(case, in_world, capfd):
    command, extra, expect = case
    refuse(in_world, in_world.fill(_argv(command, extra)), capfd, expect)


def test_every_command_has_valid_base_arguments_and_cases():
    """A command added later gets the generated cases; it needs an entry in ``BASE``."""
    missing = sorted(set(COMMANDS) - set(BASE))
    assert not missing, (f"add valid arguments for {missing} to BASE in {__file__} (and hand-"
                         "written bad inputs to HAND_WRITTEN)")
    per_command = {name: sum(1 for c in ALL_CASES if c[0] == name) for name in COMMANDS}
    assert min(per_command.values()) >= 5, per_command


def test_every_option_says_what_it_does():
    undocumented = [f"{name} {action.option_strings[0]}" for name, parser in COMMANDS.items()
                    for action in parser._actions
                    if action.option_strings and not action.help and "--help" not in action.option_strings]
    assert not undocumented, f"options without help text: {undocumented}"


def test_the_base_arguments_are_valid(in_world, capfd):
    """The cases mean something only if the base arguments alone parse (a refusal is then the
    bad input's)."""
    parser = build_parser()
    for command in COMMANDS:
        parser.parse_args(in_world.fill(_argv(command, [])))


# ------------------------------------------------------------------------------ properties
BAD_NUMBERS = st.sampled_from([".nan", ".inf", "-.inf", "-1", "1e999", "-1e999", "1e308", "0",
                               "1e-320", "'x'", "[]", "[1, 2, 3]", "{a: 1}", "null", "true"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["nodes", "slots", "slot_s", "deadline_s", "task_size_kb",
                              "complexity", "cores", "core_hz", "link_rate_mbps",
                              "link_fail_rate", "node_fail_rate", "arrival_prob", "queue_coef"]),
       value=BAD_NUMBERS, pair=st.booleans())
def test_any_bad_scenario_value_is_refused_or_runs(field, value, pair, in_world, capfd):
    """Non-finite, negative, huge, tiny or wrongly typed values in any scenario field: either a
    one-line refusal that changes nothing, or (when the value is in range) a normal run."""
    text = f"[0.5, {value}]" if pair else value
    argv = ["simulate", *SMALL, "--episodes", "1", "--set", f"{field}={text}", "--json"]
    before = snapshot(in_world.work, in_world.tmp)
    capfd.readouterr()
    code = main(argv)
    out, err = capfd.readouterr()
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert len(err.rstrip("\n").split("\n")) == 1 and field in err, (argv, err)
    else:
        result = json.loads(out)["ratc"]
        assert 0 <= result["success_rate"] <= 1 and result["tasks"] >= 0
    assert snapshot(in_world.work, in_world.tmp) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_values_anywhere_in_the_supported_ranges_run(data, in_world, capfd):
    """Both ends of every supported range, and values between (log-uniform): a run whose
    numbers are sane, or a one-line refusal for memory."""
    from o2o.core.scenario import SUPPORTED

    field = data.draw(st.sampled_from(sorted(SUPPORTED)))
    lo, hi = SUPPORTED[field]
    edge = st.sampled_from([lo, hi])
    inside = st.floats(np.log10(max(lo, 1e-3)), np.log10(hi)).map(lambda x: float(10 ** x))
    value = data.draw(st.one_of(edge, inside) if lo > 0 else st.one_of(edge, st.floats(lo, hi)))
    value = min(max(value, lo), hi)
    argv = ["simulate", *SMALL, "--episodes", "1", "--set", f"{field}={value:.17e}", "--json"]
    capfd.readouterr()
    code = main(argv)
    out, err = capfd.readouterr()
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert "memory" in err and len(err.rstrip("\n").split("\n")) == 1, (argv, err)
    else:
        result = json.loads(out)
        assert 0 <= result["ratc"]["success_rate"] <= 1 and 0 <= result["bound"] <= 1, (argv, out)


# One bad value of each kind per array: non-finite or outside [0, 1] observations, non-finite
# rewards, actions outside 0..N or not whole numbers, masks that allow nothing or are not boolean.
BAD_ENTRIES = [*((k, v) for k in ("observations", "next_observations")
                 for v in (np.nan, np.inf, -np.inf, -0.5, 1.5)),
               *(("rewards", v) for v in (np.nan, np.inf, -np.inf)),
               ("actions", -1), ("actions", 99), ("actions", 1.5),
               ("action_masks", "none allowed"), ("next_action_masks", "none allowed"),
               ("action_masks", "as floats"), ("terminals", "as floats")]


def _spoil(data: dict, array: str, value, row: int) -> None:
    target = data[array]
    row = row % len(target)
    if value == "none allowed":
        target[row] = False
    elif value == "as floats" or (isinstance(value, float) and target.dtype.kind in "iub"):
        data[array] = target.astype(np.float32)
        if value != "as floats":
            data[array].reshape(len(target), -1)[row, 0] = value
    else:
        target.reshape(len(target), -1)[row, 0] = value


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entry=st.sampled_from(BAD_ENTRIES), row=st.integers(0, 10_000))
def test_any_bad_data_set_value_is_refused_before_training(entry, row, in_world, capfd):
    """A data set with one bad value anywhere: ``train offline`` refuses it in one line, names
    the file, and writes no model (nor anything else)."""
    array, value = entry
    bad = in_world.work.parent / f"bad-{array}.npz"
    _changed_dataset(in_world.work / "dataset.npz", bad, lambda data: _spoil(data, array, value, row))
    try:
        argv = ["train", "offline", *SMALL, "--dataset", str(bad), "--out", str(in_world.work / "m"),
                "--steps", "1", "--eval-episodes", "0"]
        err = refuse(in_world, argv, capfd)
        assert str(bad) in err
    finally:
        bad.unlink()
