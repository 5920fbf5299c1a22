"""Sweeps (``o2o figure``, ``o2o sweep``): the shipped specs hold the paper's points, the spec
loader's refusals, a tiny sweep killed with SIGKILL in the middle resumes to the same numbers as
an uninterrupted one (1 worker against 2), the report redraws the same tables from the
database, a database of another sweep is refused, and the Ray executor gives the same numbers
on a real local Ray cluster that it stops afterwards."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from o2o.cli.main import main
from o2o.core.errors import UserError
from o2o.experiments.methods import HEURISTICS, LEARNED
from o2o.experiments.results_db import NO_SEED, ResultsDB
from o2o.experiments.sweep_job import open_results, plan_units
from o2o.experiments.sweeps import BOUND, BOUND_TASK, decentralized_heuristics, load_sweep
from tests.logs.test_store import postgres_url  # noqa: F401  (a fixture)

TINY = """\
name: tiny
title: a tiny sweep
scenario: paper-sim
set: {nodes: 4, slots: 10}
sweep:
  field: arrival_prob
  values: [[0, 0.5], [0, 1.0]]
  label: arrival probability
plans:
  quick: {seeds: 1, log_episodes: 4, offline_steps: 60, offline_points: 1, online_episodes: 16,
          online_eval_every: 16, curve_episodes: 2, eval_episodes: 3}
  full: {seeds: 2, log_episodes: 4, offline_steps: 60, offline_points: 1, online_episodes: 16,
         online_eval_every: 16, curve_episodes: 2, eval_episodes: 3}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def cells_of(db: Path) -> dict[tuple, list[float]]:
    sweep = load_sweep(str(db.parent.parent / "tiny.yaml"), "quick", shipped=False)
    with open_results(sweep, db, create=False) as results:
        return {c.key: c.rates for c in results.read()}


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny sweep run through once with one worker: (folder, spec path, cells)."""
    root = tmp_path_factory.mktemp("sweep")
    spec = write(root / "tiny.yaml", TINY)
    out = root / "one-worker"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1", "--json"]) == 0
    return root, spec, cells_of(out / "results.db")


# ------------------------------------------------------------------------------ the specs
def test_shipped_specs_hold_the_papers_points():
    def values(name, plan="full"):
        sweep = load_sweep(name, plan, shipped=True)
        return sweep, [p.scenario for p in sweep.points]

    sweep, scenarios = values("fig5a")
    assert [s.task_size_kb for s in scenarios] == [(1000, x) for x in (4000, 6000, 8000, 10000, 12000)]
    _, scenarios = values("fig5b")
    assert [s.arrival_prob for s in scenarios] == [(0, p) for p in (0.6, 0.7, 0.8, 0.9, 1.0)]
    _, scenarios = values("fig5c")
    assert [s.node_fail_rate for s in scenarios] == [(0, f) for f in (0.1, 0.15, 0.2, 0.25, 0.3)]
    fig6, scenarios = values("fig6")
    assert [s.nodes for s in scenarios] == [10, 20, 30, 40, 50]
    # The same rows in every data set of fig6: log episodes scale as 20 / N.
    assert [fig6.log_episodes(p) * p.scenario.nodes for p in fig6.points] == [300 * 20] * 5
    fig4, _ = values("fig4")
    assert [p.logging for p in fig4.points] == list(decentralized_heuristics())
    assert {p.scenario_key for p in fig4.points} == {0}     # one scenario: heuristics run once
    fig8, scenarios = values("fig8")
    assert fig8.testbed and all(s.nodes == 10 and s.slot_s == 0.1 for s in scenarios)
    assert 4 <= len(scenarios) <= 5
    assert (fig8.plan.collect_episodes, fig8.plan.online_rounds * fig8.plan.episodes_per_round) == (200, 50)
    for name in ("fig4", "fig5a", "fig5b", "fig5c", "fig6", "fig8"):
        sweep = load_sweep(name, "full", shipped=True)
        # Every method of the comparison (a heuristic added to the project joins by itself).
        assert set(sweep.methods) == {*HEURISTICS, *LEARNED, BOUND}
        assert sweep.seeds >= 3
        assert load_sweep(name, "quick", shipped=True).spec_hash() != sweep.spec_hash()
    # The number of seeds is not part of a sweep's identity: more seeds extend a database.
    assert load_sweep("fig5a", "quick", 5, shipped=True).spec_hash() == \
        load_sweep("fig5a", "quick", shipped=True).spec_hash()


def test_units_cover_every_cell_once():
    sweep = load_sweep("fig4", "quick", 2, shipped=True)
    keys = [k for u in plan_units(sweep) for k in u.keys()]
    assert len(keys) == len(set(keys))
    heuristic_cells = {k for k in keys if k[2] == NO_SEED}
    assert heuristic_cells == {(0, m, NO_SEED) for m in (*HEURISTICS, BOUND, BOUND_TASK)}
    assert {k for k in keys if k[2] != NO_SEED} == {(p, m, s) for p in range(len(sweep.points))
                                                     for m in LEARNED for s in (0, 1)}


BAD_SPECS = {
    "unknown key": (TINY + "colour: blue\n", "colour: unknown key"),
    "unknown field": (TINY.replace("field: arrival_prob", "field: arrival_rate"),
                      "sweep.field 'arrival_rate' is not a scenario field"),
    "empty sweep": (TINY.replace("values: [[0, 0.5], [0, 1.0]]", "values: []"), "sweep.values is empty"),
    "bad value": (TINY.replace("[0, 1.0]]", "[0, 1.5]]"), "arrival_prob is a probability"),
    "unknown method": (TINY + "methods: [ratc, magic]\n", "unknown method 'magic'"),
    "unknown size": (TINY.replace("eval_episodes: 3}", "eval_episodes: 3, epochs: 2}", 1),
                     "unknown size epochs"),
    "zero size": (TINY.replace("seeds: 1,", "seeds: 0,"), "sizes must be whole numbers >= 1"),
    "no full plan": (TINY.split("  full:")[0], "needs exactly the plans quick, full"),
    "unknown logging heuristic": (TINY + "logging: central\n", "logging heuristic 'central'"),
    "not yaml": ("name: [tiny\n", "not valid YAML"),
    "not a mapping": ("- 1\n- 2\n", "expected a mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_specs_are_refused_in_one_line_and_nothing_is_written(case, tmp_path, capsys):
    text, expected = BAD_SPECS[case]
    spec = write(tmp_path / "bad.yaml", text)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("o2o: error: ") and expected in err, err
    assert not out.exists()


def test_bad_command_lines_are_refused(tmp_path, capsys):
    for argv in (["figure", "fig9"], ["figure", "fig5a", "--plan", "huge"],
                 ["figure", "fig5a", "--seeds", "0"], ["sweep", str(tmp_path / "missing.yaml")],
                 ["figure", "fig5a", "--address", "auto", "--out", str(tmp_path / "o")],
                 ["figure", "all", "--db", str(tmp_path / "r.db")],
                 ["figure", "fig5a", "--report", "--out", str(tmp_path / "o")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("o2o: error: "), err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ the tiny sweep
def test_the_tiny_sweep_has_every_cell(tiny):
    root, _, cells = tiny
    sweep = load_sweep(str(root / "tiny.yaml"), "quick", shipped=False)
    assert set(cells) == {k for u in plan_units(sweep) for k in u.keys()}
    assert all(len(rates) == 3 and all(0 <= r <= 1 for r in rates) for rates in cells.values())
    report = json.loads((root / "one-worker" / "tiny.json").read_text())
    assert report["cells_missing"] == 0 and len(report["points"]) == 2
    for point in report["points"]:
        methods = point["methods"]
        assert set(methods) == {*HEURISTICS, *LEARNED, "bound", "bound-task"}
        # The bounds are on the expected rate (a lucky episode may beat them), so only their range.
        assert 0 < methods["bound"] <= methods["bound-task"] <= 1
        # Every method's probes per task; the tunable rules tuned in their cells.
        assert methods["local"]["probes_per_task"] == 0 and methods["esf"]["probes_per_task"] == 3
        assert methods["central"]["probes_per_task"] == "full" and methods["o2o-drl"]["probes_per_task"] == 3
        assert set(point["tuned"]) == {"spread", "slack-reliable"}
        assert all(t["source"] == "auto" for t in point["tuned"].values())
    table = (root / "one-worker" / "tiny.md").read_text()
    assert "Probes per task" in table and "Tuned values" in table


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killed_with_sigkill_it_resumes_to_the_same_numbers(tiny, tmp_path):
    root, spec, reference = tiny
    out = root / "killed"
    db = out / "results.db"
    total = len(reference)
    proc = subprocess.Popen([sys.executable, "-m", "o2o.cli.main", "sweep", str(spec), "--out", str(out),
                             "--workers", "2", "--json"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        written = 0
        while time.monotonic() < deadline and proc.poll() is None:
            workers.update(_children(proc.pid))
            if db.exists():
                try:
                    written = len(cells_of(db))
                except UserError:       # created, its tables not yet committed
                    written = 0
                if written:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)       # the sweep's own process, kill -9
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    at_kill = cells_of(db)
    assert 0 < len(at_kill) < total
    # No half unit: a training seed's learned cells are all there or none.
    for point in (0, 1):
        assert len({m for (p, m, s) in at_kill if p == point and s == 0}) in (0, len(LEARNED))
    # Its workers die with it.
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers and not any(_alive(w) for w in workers)

    assert main(["sweep", str(spec), "--out", str(out), "--workers", "2", "--json"]) == 0
    assert cells_of(db) == reference       # the same numbers, to the last bit
    assert {k: v for k, v in cells_of(db).items() if k in at_kill} == at_kill

    # A finished sweep computes nothing when run again.
    before = file_digest(db)
    assert main(["sweep", str(spec), "--out", str(out), "--json"]) == 0
    assert cells_of(db) == reference and file_digest(db) == before


def test_the_report_redraws_the_same_tables_from_the_database(tiny, capsys):
    root, spec, _ = tiny
    out = root / "one-worker"
    tables = {n: (out / n).read_text() for n in ("tiny.md", "tiny.json")}
    for name in (*tables, "tiny.png"):
        (out / name).unlink()
    db_before = file_digest(out / "results.db")
    assert main(["sweep", str(spec), "--out", str(out), "--report", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["units_computed"] == 0 and summary["cells_missing"] == 0
    assert {n: (out / n).read_text() for n in tables} == tables
    assert (out / "tiny.png").stat().st_size > 0
    assert file_digest(out / "results.db") == db_before


def test_a_database_of_another_sweep_is_refused_and_left_alone(tiny, tmp_path, capsys):
    root, spec, _ = tiny
    out = root / "one-worker"
    other = write(tmp_path / "tiny.yaml", TINY.replace("[0, 1.0]]", "[0, 0.9]]"))
    listing = sorted(p.name for p in out.iterdir())
    before = file_digest(out / "results.db")
    for argv in (["sweep", str(other), "--out", str(out)],
                 ["sweep", str(spec), "--out", str(out), "--plan", "full"],
                 ["sweep", str(other), "--out", str(out), "--report"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "another sweep" in err and err.count("\n") == 1, err
    assert file_digest(out / "results.db") == before
    assert sorted(p.name for p in out.iterdir()) == listing
    # Nor is a file that is not a results database touched.
    text_file = write(tmp_path / "notes.txt", "not a database\n")
    assert main(["sweep", str(spec), "--db", str(text_file), "--out", str(tmp_path / "x")]) == 2
    assert text_file.read_text() == "not a database\n" and not (tmp_path / "x").exists()
    assert main(["sweep", str(spec), "--db", str(root / "one-worker" / "tiny.json"),
                 "--out", str(tmp_path / "x")]) == 2
    assert main(["sweep", str(spec), "--report", "--out", str(tmp_path / "none")]) == 2
    assert "no results database" in capsys.readouterr().err and not (tmp_path / "none").exists()


@pytest.mark.postgres
def test_results_in_postgresql_follow_the_same_rules(tiny, postgres_url):  # noqa: F811
    root, spec, reference = tiny
    sweep = load_sweep(str(spec), "quick", shipped=False)
    with open_results(sweep, postgres_url, create=True) as results:
        with open_results(sweep, str(root / "one-worker" / "results.db"), create=False) as local:
            results.write(local.read())
        assert {c.key: c.rates for c in results.read()} == reference
    other = load_sweep(str(spec), "full", shipped=False)
    with pytest.raises(Exception, match="another sweep"):
        ResultsDB.open(postgres_url, name=other.name, plan=other.plan_name,
                       spec_hash=other.spec_hash(), spec=other.identity(), create=True)


# ------------------------------------------------------------------------------ Ray
def _ray_pids() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"ray" in cmd and (b"raylet" in cmd or b"gcs_server" in cmd or b"ray::" in cmd
                                  or b"default_worker.py" in cmd):
                pids.add(int(proc.name))
    return pids


@pytest.mark.ray
def test_ray_executor_gives_the_same_numbers_and_leaves_no_process(tiny):
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed under CI: .ci/run installs the ray extra")
        pytest.skip("Ray is not installed (pip install -e '.[ray]')")
    root, spec, reference = tiny
    out = root / "ray"
    before = _ray_pids()
    assert main(["sweep", str(spec), "--out", str(out), "--executor", "ray", "--workers", "2",
                 "--json"]) == 0
    assert cells_of(out / "results.db") == reference
    deadline = time.monotonic() + 30
    while (_ray_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not (_ray_pids() - before)


# ------------------------------------------------------------------------------ the testbed (Fig. 8)
TESTBED = """\
name: tinybed
title: a tiny testbed sweep
where: testbed
scenario: paper-testbed
set: {nodes: 3, slots: 8, slot_s: 0.05, deadline_s: 0.6}
sweep:
  field: task_size_kb
  values: [[200, 800]]
plans:
  quick: {seeds: 1, collect_episodes: 2, offline_steps: 20, online_rounds: 1, episodes_per_round: 1,
          eval_episodes: 2}
  full: {seeds: 3, collect_episodes: 200, offline_steps: 3000, online_rounds: 10, episodes_per_round: 5,
         eval_episodes: 10}
"""


def test_a_testbed_sweep_trains_and_evaluates_every_method_on_node_processes(tmp_path, capsys):
    spec = write(tmp_path / "tinybed.yaml", TESTBED)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cells_missing"] == 0
    report = json.loads((out / "tinybed.json").read_text())
    (point,) = report["points"]
    assert set(point["methods"]) == {*HEURISTICS, *LEARNED, "bound", "bound-task"}
    assert all(0 <= point["methods"][m]["success_rate"] <= 1 for m in (*HEURISTICS, *LEARNED))
    # Logs, offline training, fine-tuning and the online-only baseline all ran on the testbed,
    # from its own task log; the models were published to the unit's store.
    from o2o.logs.store import LogStore
    from o2o.models import ModelStore

    (unit,) = [d for d in (out / "cells").iterdir() if d.name.startswith("p0-testbed-training")]
    assert ModelStore(str(unit / "models")).latest() == 4  # offline, o2o, initial, online-only
    with LogStore.open(unit / "logs.db") as store:
        phases = sorted(r.phase for r in store.runs())
    assert phases == ["evaluation"] * 3 + ["heuristic"] + ["online"] * 2
    assert "central (simulator)" in (out / "tinybed.md").read_text()
    # The tunable rules ran on the nodes at their values for this point, tuned in the simulator
    # first (as in a simulator figure's cells), and their task log says so; the others at none.
    from o2o.testbed.phase import params_note

    assert set(point["tuned"]) == {"spread", "slack-reliable"}
    (rules,) = [d for d in (out / "cells").iterdir() if d.name.startswith("p0-testbed-heuristics")]
    with LogStore.open(rules / "logs.db") as store:
        notes = {r.scheduler: r.note for r in store.runs()}
    assert {"ratc", "spread", "slack-reliable"} <= set(notes)
    for name in notes:
        tuned = point["tuned"].get(name)
        assert notes[name] == (params_note(tuned["params"]) if tuned else None), name


@pytest.mark.parametrize("plan", ["quick", "full"])
def test_every_shipped_figure_plans_and_weighs_its_units(plan):
    """Each shipped spec's plans build, and every unit gets a positive estimated cost (a size a
    plan leaves out, as the full plans leave out offline_steps, is the settings' own)."""
    from o2o.experiments.specs import FIGURES
    from o2o.experiments.sweep_job import unit_weight

    for name in FIGURES:
        sweep = load_sweep(name, plan, shipped=True)
        weights = [unit_weight(sweep, u) for u in plan_units(sweep)]
        assert weights and all(math.isfinite(w) and w > 0 for w in weights), name


def test_a_tuned_file_applies_at_its_point_and_changes_the_sweeps_identity(tmp_path, capsys):
    from o2o.experiments.cells import run_unit
    from o2o.experiments.sweep_job import unit_task
    from o2o.experiments.sweeps import with_tuned

    spec = write(tmp_path / "tiny.yaml", TINY)
    tuned = tmp_path / "spread.json"
    assert main(["tune", "--scheduler", "spread", "--set", "nodes=4", "--set", "slots=10",
                 "--set", "arrival_prob=[0, 0.5]", "--episodes", "2", "--out", str(tuned)]) == 0
    plain = load_sweep(str(spec), "quick", shipped=False)
    (sweep,) = with_tuned([plain], [str(tuned)])
    assert sweep.tuned_for(sweep.points[0], "spread")["source"] == str(tuned)
    assert sweep.tuned_for(sweep.points[1], "spread") is None
    assert sweep.spec_hash() != plain.spec_hash()
    params = json.loads(tuned.read_text())["params"]
    units = [u for u in plan_units(sweep) if u.kind == "heuristic" and u.methods == ("spread",)]
    infos = {u.point: run_unit(unit_task(sweep, u, tmp_path / "out")).pop().info for u in units}
    assert infos[0]["tuned"]["params"] == params and infos[0]["tuned"]["source"] == str(tuned)
    assert infos[1]["tuned"]["source"] == "auto" and infos[1]["probes_per_task"] == 3
    # A file of another network seed fits no point: refused in one line.
    other = tmp_path / "other.json"
    assert main(["tune", "--scheduler", "spread", "--set", "nodes=4", "--set", "slots=10",
                 "--network-seed", "5", "--episodes", "2", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "never"), "--tuned", str(other)]) == 2
    assert "no point" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_a_training_cell_logs_the_tuned_teacher_when_the_settings_ask(tmp_path):
    """A learner's cell under settings with log_tuned logs its teacher at the values tuned for
    that point on validation episodes (the values its heuristic cell finds), and says so."""
    from dataclasses import replace

    from o2o.core.network import sample_network
    from o2o.experiments.cells import run_unit
    from o2o.experiments.sweep_job import unit_task
    from o2o.experiments.tuning import tune_rule
    from o2o.learn.settings import learner_settings

    sweep = load_sweep(str(write(tmp_path / "tiny.yaml", TINY)), "quick", shipped=False)
    (unit,) = [u for u in plan_units(sweep) if u.kind == "training" and u.point == 0]
    point = sweep.points[0]
    want = tune_rule(point.scenario, sample_network(point.scenario, 0), "spread", network_seed=0)["params"]
    assert want != tune_rule(point.scenario, sample_network(point.scenario, 0), "spread",
                             network_seed=0)["default_params"]
    logs = {}
    for tuned in (True, False):
        task = unit_task(sweep, unit, tmp_path / f"out-{tuned}")
        task = replace(task, settings=learner_settings("project", log_tuned=tuned))
        logs[tuned] = run_unit(task)[0].info["logs"]
    assert logs[True]["heuristic"] == "spread" and logs[True]["params"] == want
    assert "params" not in logs[False] and logs[True]["success_rate"] != logs[False]["success_rate"]


def test_a_training_cell_logs_its_teacher_at_a_given_tuned_file(tmp_path):
    """With --tuned for the logging rule at a point, a learner's cell under log_tuned logs the
    rule at the file's values (as o2o run --tuned does), not at values tuned again."""
    from dataclasses import replace

    from o2o.experiments.cells import run_unit
    from o2o.experiments.sweep_job import unit_task
    from o2o.experiments.sweeps import with_tuned
    from o2o.learn.settings import learner_settings

    spec = write(tmp_path / "tiny.yaml", TINY)
    tuned = tmp_path / "spread.json"
    assert main(["tune", "--scheduler", "spread", "--set", "nodes=4", "--set", "slots=10",
                 "--set", "arrival_prob=[0, 0.5]", "--episodes", "1", "--seed", "900500",
                 "--out", str(tuned)]) == 0
    given = json.loads(tuned.read_text())["params"]
    (sweep,) = with_tuned([load_sweep(str(spec), "quick", shipped=False)], [str(tuned)])
    (unit,) = [u for u in plan_units(sweep) if u.kind == "training" and u.point == 0]
    task = replace(unit_task(sweep, unit, tmp_path / "out"), settings=learner_settings("project", log_tuned=True))
    assert task.tuned["spread"]["source"] == str(tuned)
    # (tuned here, on 10 episodes from 900000, the rule would get other values)
    from o2o.core.network import sample_network
    from o2o.experiments.tuning import tune_rule

    point = sweep.points[0]
    assert tune_rule(point.scenario, sample_network(point.scenario, 0), "spread", network_seed=0)["params"] != given
    assert run_unit(task)[0].info["logs"]["params"] == given
