"""The edges of issue 18, one test per defect: bounded counts, hostile YAML, refusals that
write nothing, results databases whose cells are checked when read, and options whose words
and effects agree. Each refusal is checked as the README promises it (tests/cli/refusals.py):
exit code 2, one line, no traceback, nothing written."""

from __future__ import annotations

import pytest

from o2o.cli.main import main
from tests.cli.refusals import refused

SMALL = ["--set", "nodes=4", "--set", "slots=10"]
TINY_PLAN = ("{seeds: 1, log_episodes: 2, offline_steps: 2, offline_points: 1, online_episodes: 8, "
             "online_eval_every: 8, curve_episodes: 1, eval_episodes: 2}")


def tiny_spec(**changes: str) -> str:
    """A sweep spec of 2 points of 4 nodes and 10 slots, one seed; ``changes`` replace or add
    top-level keys (YAML text)."""
    keys = {"name": "tiny", "scenario": "paper-sim", "set": "{nodes: 4, slots: 10}",
            "sweep": "{field: arrival_prob, values: [[0, 0.5], [0, 1.0]]}",
            "methods": "[ratc, bound]", "plans": f"{{quick: {TINY_PLAN}, full: {TINY_PLAN}}}"}
    keys.update(changes)
    return "".join(f"{k}: {v}\n" for k, v in keys.items())


# ------------------------------------------------------------------------------ 2. hostile YAML
DEEP = "[" * 1000 + "]" * 1000
LAUGHS = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{k}: &a{k} [*a{k - 1}, *a{k - 1}, *a{k - 1}, *a{k - 1}, *a{k - 1}, *a{k - 1}, *a{k - 1}, "
    f"*a{k - 1}, *a{k - 1}, *a{k - 1}]\n" for k in range(1, 9))


@pytest.mark.parametrize("where", ["--set", "scenario", "sweep set", "sweep values"])
def test_yaml_nested_1000_deep_is_refused_in_one_line(where, tmp_path, capfd):
    """Defect 2: 1000 nested brackets gave a RecursionError traceback of 3000 lines."""
    argv = _yaml_case(where, DEEP, tmp_path)
    refused(argv, capfd, tmp_path, expect="nested more than 32 levels")


@pytest.mark.parametrize("where", ["--set", "scenario", "sweep set", "sweep values"])
def test_yaml_aliases_are_refused_before_anything_expands(where, tmp_path, capfd):
    """Defect 2: a 2 KB "billion laughs" (10^9 leaves) spun for minutes ignoring Ctrl-C; any
    alias is now refused where the reader meets it."""
    argv = _yaml_case(where, "*a8", tmp_path, prelude=LAUGHS)
    refused(argv, capfd, tmp_path, expect="anchors and aliases are not supported")


def test_a_harmless_alias_is_refused_too(tmp_path, capfd):
    path = tmp_path / "s.yaml"
    path.write_text("preset: paper-sim\nnodes: &n 4\nslots: 10\ncores: *n\n")
    refused(["simulate", "--scenario", path, "--episodes", "1"], capfd, tmp_path,
            expect=f"scenario file {path} line 2 column 8: anchor &n")


@pytest.mark.parametrize("where", ["scenario", "sweep"])
def test_duplicate_keys_are_refused(where, tmp_path, capfd):
    """Defect 6: a key given twice silently kept the last value."""
    if where == "scenario":
        path = tmp_path / "s.yaml"
        path.write_text("preset: paper-sim\nnodes: 4\nslots: 10\nnodes: 5\n")
        argv = ["simulate", "--scenario", path, "--episodes", "1"]
    else:
        path = tmp_path / "spec.yaml"
        path.write_text(tiny_spec() + "name: other\n")
        argv = ["sweep", path, "--out", tmp_path / "out"]
    refused(argv, capfd, tmp_path, expect="line 4 column 1: key 'nodes' given twice"
            if where == "scenario" else "line 7 column 1: key 'name' given twice")


def test_duplicate_keys_in_a_set_value_are_refused(tmp_path, capfd):
    refused(["simulate", *SMALL, "--set", "arrival_prob={a: 1, a: 2}", "--episodes", "1"], capfd,
            tmp_path, expect="key 'a' given twice")


def test_non_utf8_spec_is_refused_in_one_line(tmp_path, capfd):
    path = tmp_path / "spec.yaml"
    path.write_bytes(tiny_spec(title="caf\xe9").encode("latin-1"))
    refused(["sweep", path, "--out", tmp_path / "out"], capfd, tmp_path, expect="not UTF-8")


def test_yaml_hyper_parameter_values_use_the_same_reader(tmp_path, capfd):
    refused(["train", "online", *SMALL, "--from-scratch", "--episodes", "1", "--out",
             tmp_path / "m", "--set-hparam", f"hidden={DEEP}"], capfd, tmp_path,
            expect="--set-hparam hidden line 1 column 33: nested more than 32 levels")


def _yaml_case(where: str, value: str, tmp_path, prelude: str = "") -> list:
    if where == "--set":
        return ["simulate", *SMALL, "--episodes", "1", "--set", f"cores={value}"]
    if where == "scenario":
        path = tmp_path / "scenario.yaml"
        path.write_text(f"{prelude}preset: paper-sim\ncores: {value}\n")
        return ["simulate", "--scenario", path, "--episodes", "1"]
    path = tmp_path / "spec.yaml"
    if where == "sweep set":
        text = tiny_spec(set=f"{{nodes: 4, slots: 10, cores: {value}}}")
    else:
        text = tiny_spec(sweep=f"{{field: cores, values: [{value}]}}")
    path.write_text(prelude + text)
    return ["sweep", path, "--out", tmp_path / "out"]



# ------------------------------------------------------------------------------ 1. counts
BIG = 10**12


@pytest.mark.parametrize("argv, expect", [
    (["simulate", *SMALL, "--episodes", BIG], "--episodes: must be at most 1,000,000"),
    (["collect", *SMALL, "--episodes", BIG, "--db", "{tmp}/log.db"], "at most 1,000,000"),
    (["evaluate", *SMALL, "--scheduler", "ratc", "--episodes", BIG], "at most 1,000,000"),
    (["train", "online", *SMALL, "--from-scratch", "--episodes", BIG, "--out", "{tmp}/m"],
     "at most 1,000,000"),
    (["testbed", "run", "--episodes", 10**6, "--db", "{tmp}/tb.db"], "at most 10,000"),
    (["figure", "fig5c", "--seeds", 10**8, "--out", "{tmp}/f"], "--seeds: must be at most 1,000"),
    (["run", "--quick", "--workers", 10**6, "--out", "{tmp}/r"], "--workers: must be at most 256"),
    (["simulate", *SMALL, "--seed", 10**30], "--seed: must be at most"),
    (["simulate", *SMALL, "--seed", "9" * 5000], "whole number"),
    (["train", "offline", *SMALL, "--dataset", "{tmp}/d.npz", "--out", "{tmp}/m", "--seed", 10**7],
     "--seed: must be at most 1,000,000"),
    (["run", "--quick", "--log-episodes", 950_000, "--out", "{tmp}/r"],
     "--log-episodes = 950,000 is more than the 900,000"),
])
def test_counts_past_their_bound_are_refused_before_anything(argv, expect, tmp_path, capfd):
    """Defect 1: `simulate --episodes 10^12` grew to 20 GB before the OOM killer; `figure
    --seeds 10^8` hung after creating results.db."""
    argv = [str(a).format(tmp=tmp_path) for a in argv]
    refused(argv, capfd, tmp_path, expect=expect)


def test_a_spec_with_a_billion_seeds_is_refused_before_its_database(tmp_path, capfd):
    spec = tmp_path / "spec.yaml"
    spec.write_text(tiny_spec(plans=f"{{quick: {TINY_PLAN.replace('seeds: 1', 'seeds: 1000000000')}, "
                                    f"full: {TINY_PLAN}}}"))
    refused(["sweep", spec, "--out", tmp_path / "out"], capfd, tmp_path,
            expect="plans.quick.seeds = 1,000,000,000 is more than the 1,000 supported")


def test_worker_processes_are_checked_against_memory(tmp_path, capfd, monkeypatch):
    """Defect 1: no command checked the memory of its worker processes (300 MB each)."""
    import o2o.core.limits as limits

    monkeypatch.setattr(limits, "available_bytes", lambda: 1 * 2**30)
    refused(["run", *SMALL, "--quick", "--seeds", "8", "--workers", "8", "--log-episodes", "1",
             "--out", tmp_path / "r"], capfd, tmp_path, expect="8 worker processes")
    spec = tmp_path / "spec.yaml"
    spec.write_text(tiny_spec(sweep="{field: arrival_prob, values: [[0, 0.1], [0, 0.2], [0, 0.3], "
                                    "[0, 0.4], [0, 0.5], [0, 0.6]]}"))
    refused(["sweep", spec, "--workers", "8", "--out", tmp_path / "s"], capfd, tmp_path,
            expect="worker processes")


# ------------------------------------------------------------------------------ 3. refusals write nothing
def test_eval_episodes_past_the_held_out_range_leave_no_database(tmp_path, capfd):
    """Defect 3: the spec was refused after OUT/results.db was made, and the corrected spec was
    then refused as "another sweep"."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(tiny_spec(plans=f"{{quick: {TINY_PLAN.replace('eval_episodes: 2', 'eval_episodes: 1000001')}, "
                                    f"full: {TINY_PLAN}}}"))
    refused(["sweep", spec, "--out", tmp_path / "out"], capfd, tmp_path,
            expect="eval_episodes = 1,000,001 is more than the 1,000,000 supported")
    spec.write_text(tiny_spec())
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--workers", "1", "--json"]) == 0


def test_executor_ray_without_ray_leaves_no_database(tmp_path, capfd, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)   # as where Ray is not installed
    spec = tmp_path / "spec.yaml"
    spec.write_text(tiny_spec())
    refused(["sweep", spec, "--executor", "ray", "--out", tmp_path / "out"], capfd, tmp_path,
            expect="--executor ray needs Ray")


@pytest.fixture(scope="module")
def v1_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("v1")
    assert main(["collect", *SMALL, "--episodes", "1", "--db", str(folder / "log.db"), "--json"]) == 0
    assert main(["dataset", "export", "--db", str(folder / "log.db"), "--out",
                 str(folder / "v1.npz"), "--json"]) == 0
    return folder / "v1.npz"


def test_train_offline_refused_for_its_data_set_leaves_no_model_folder(v1_dataset, tmp_path, capfd):
    """Defect 3: the project's settings (scorer actor, layout v2) refused a v1 data set after
    MODEL_DIR/logs/ was made."""
    refused(["train", "offline", *SMALL, "--dataset", v1_dataset, "--out", tmp_path / "model",
             "--steps", "1", "--eval-episodes", "0"], capfd, tmp_path,
            expect="the scorer actor reads observation layout o2o-obs-v2")


# ------------------------------------------------------------------------------ 5. --out
@pytest.mark.parametrize("command", [
    ["figure", "fig5a"], ["sweep", "{spec}"], ["run", *SMALL, "--quick"],
    ["ablation", *SMALL, "--quick", "--rung", "0"],
    ["train", "online", *SMALL, "--from-scratch", "--episodes", "1"]])
@pytest.mark.parametrize("out, expect", [("{tmp}/" + "x" * 300, "more than the 255"),
                                         ("/proc/o2o-test/x", "cannot be created"),
                                         ("{tmp}/spec.yaml", "is a file, not a folder")])
def test_an_out_that_cannot_be_created_is_refused_in_one_line(command, out, expect, tmp_path, capfd):
    """Defect 5: a name too long, or a path under /proc, gave an OSError traceback; `--out
    FILE` was blamed on --db."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(tiny_spec())
    argv = [a.format(spec=spec, tmp=tmp_path) for a in [*command, "--out", out]]
    err = refused(argv, capfd, tmp_path, expect=expect)
    assert "--out" in err and "--db" not in err


# ------------------------------------------------------------------------------ 4. results cells
@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A finished tiny sweep (RATC and the bound at 2 points, 2 held-out episodes each)."""
    folder = tmp_path_factory.mktemp("finished-sweep")
    spec = folder / "spec.yaml"
    spec.write_text(tiny_spec())
    assert main(["sweep", str(spec), "--out", str(folder / "out"), "--workers", "1", "--json"]) == 0
    return folder


CELL_EDITS = [  # (SQL on the RATC cell of point 0, what the refusal says)
    ("rates = '[NaN, 0.5]'", "rates[0] is nan, not a success rate"),
    ("rates = '[-1.6667, 0.5]'", "rates[0] is -1.6667, not a success rate in [0, 1]"),
    ("rates = '[0.5]'", "rates holds 1 episodes, the plan 2"),
    ("rates = '[0.5, \"0.5\"]'", "rates[1] is '0.5'"),
    ("rates = '[0.5, true]'", "rates[1] is True"),
    ("rates = '{\"a\": 1}'", "rates is not a list"),
    ("rates = 'not json'", "rates is not valid JSON"),
    ("rates = 7", "rates is not a list"),
    ("info = '[]'", "info is not an object"),
    ("info = '{\"curve\": [{\"episodes\": -1, \"success_rate\": 0.5}]}'", "info.curve[0].episodes"),
    ("info = '{\"curve\": [{\"success_rate\": 2}]}'", "info.curve[0].success_rate is 2"),
    ("info = '{\"cpu_s\": \"x\"}'", "info.cpu_s"),
    ("point = 99", "no point 99"),
    ("point = 'zero'", "point is 'zero'"),
    ("method = 'best'", "unknown method 'best'"),
    ("seed = 3", "seed 3 is not a training seed of ratc"),
    ("seconds = -1", "seconds is -1"),
    ("point_value = '{'", "point_value is not valid JSON"),
]


@pytest.mark.parametrize("edit, expect", CELL_EDITS, ids=[e for e, _ in CELL_EDITS])
def test_a_damaged_cell_refuses_the_database_before_the_report(edit, expect, finished_sweep,
                                                               tmp_path, capfd):
    """Defect 4: edited cells crashed --report with five tracebacks (a NaN rate after NAME.json
    was rewritten), or were shown (RATC at -1.6667)."""
    import shutil
    import sqlite3

    out = tmp_path / "out"
    shutil.copytree(finished_sweep / "out", out)
    with sqlite3.connect(out / "results.db") as conn:
        conn.execute(f"UPDATE cells SET {edit} WHERE point = 0 AND method = 'ratc'")
    conn.close()
    err = refused(["sweep", finished_sweep / "spec.yaml", "--out", out, "--report"], capfd, tmp_path,
                  expect=expect)
    assert "cell (point" in err and "Nothing was written" in err


def test_an_intact_database_redraws_the_same_report(finished_sweep, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(finished_sweep / "out", out)
    before = (out / "tiny.json").read_text()
    assert main(["sweep", str(finished_sweep / "spec.yaml"), "--out", str(out), "--report", "--json"]) == 0
    assert (out / "tiny.json").read_text() == before


# ------------------------------------------------------------------------------ 6. lax specs
@pytest.mark.parametrize("change, expect", [
    (dict(plans=f"{{quick: {TINY_PLAN.replace('seeds: 1', 'seeds: true')}, full: {TINY_PLAN}}}"),
     "plans.quick.seeds: Input should be a valid integer"),
    (dict(plans=f"{{quick: {TINY_PLAN.replace('seeds: 1', 'seeds: yes')}, full: {TINY_PLAN}}}"),
     "plans.quick.seeds: Input should be a valid integer"),
    (dict(plans=f"{{quick: {TINY_PLAN.replace('seeds: 1', 'seeds: ' + chr(34) + '2' + chr(34))}, "
                f"full: {TINY_PLAN}}}"), "plans.quick.seeds: Input should be a valid integer"),
    (dict(network_seed="true"), "network_seed: Input should be a valid integer"),
    (dict(sweep="{field: queue_coef, values: [4, 4.0]}"), "sweep.values repeats a value"),
    (dict(sweep="{field: cores, values: [4, [4]]}"), "is the same scenario as point 0"),
    (dict(name=".."), "name: a letter or digit first"),
    (dict(name=".hidden"), "name: a letter or digit first"),
    (dict(methods="[1]"), "methods.0: Input should be a valid string"),
    (dict(methods="ratc"), "methods must be all or a list of methods"),
])
def test_lax_spec_values_are_refused(change, expect, tmp_path, capfd):
    """Defect 6: `seeds: true` ran one seed, `values: [4, 4.0]` gave two identical points,
    `name: ..` wrote `...json`; pydantic's union members appeared in the `methods` error."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(tiny_spec(**change))
    err = refused(["sweep", spec, "--out", tmp_path / "out"], capfd, tmp_path, expect=expect)
    assert "list[str]" not in err and "literal" not in err.lower()


# ------------------------------------------------------------------------------ 7. words and effects
def test_online_episodes_run_as_many_as_asked(tmp_path, capfd):
    """Defect 7: `o2o run --online-episodes 4` ran 8 (whole batches of 8); results.json said 4
    and the models' manifests 8."""
    import json

    out = tmp_path / "run"
    assert main(["run", *SMALL, "--quick", "--seeds", "1", "--workers", "1", "--log-episodes", "1",
                 "--offline-steps", "1", "--online-episodes", "4", "--eval-episodes", "1",
                 "--out", str(out), "--json"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["plan"]["online_episodes"] == 4
    for method in ("o2o-drl", "online-only"):
        manifest = json.loads((out / "models" / method / "seed0" / "manifest.json").read_text())
        assert manifest["training"]["online_episodes"] == 4
    assert report["curves"][0]["o2o"][-1]["episodes"] == 4


def test_train_online_runs_a_last_smaller_batch(tmp_path, capfd):
    import json

    capfd.readouterr()
    assert main(["train", "online", *SMALL, "--from-scratch", "--episodes", "11", "--eval-episodes",
                 "0", "--out", str(tmp_path / "m"), "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["episodes"] == 11
    history = [json.loads(line) for line in (tmp_path / "m" / "logs" / "metrics.jsonl").open()]
    assert [r["episodes"] for r in history if r["phase"] == "online"] == [8, 11]


def test_a_repeated_rung_is_refused(tmp_path, capfd):
    refused(["ablation", *SMALL, "--quick", "--rung", "1", "--rung", "1", "--out", tmp_path / "a"],
            capfd, tmp_path, expect="--rung repeats a rung (1 1)")


@pytest.mark.parametrize("value, expect", [("[0]", "hidden.0: Input should be greater than or equal to 1"),
                                           ("[100000000]", "hidden.0: Input should be less than or equal to 1024"),
                                           ("[8, 8, 8, 8, 8, 8, 8, 8, 8]", "hidden: Tuple should have at most 8 items")])
def test_hidden_sizes_are_bounded(value, expect, tmp_path, capfd):
    """Defect 7: hidden=[0] was accepted, and hidden=[10^8] had no memory check."""
    refused(["train", "online", *SMALL, "--from-scratch", "--episodes", "1", "--out", tmp_path / "m",
             "--set-hparam", f"hidden={value}"], capfd, tmp_path, expect=f"--set-hparam: invalid "
            f"hyper-parameter: {expect}")


@pytest.mark.parametrize("option", ["--set-offline", "--set-online"])
def test_a_bad_override_names_its_own_option(option, tmp_path, capfd):
    """Defect 7: `--set-online noequals` blamed --set-hparam."""
    refused(["run", *SMALL, "--quick", option, "noequals", "--out", tmp_path / "r"], capfd, tmp_path,
            expect=f"{option} 'noequals' must look like key=value")
    refused(["run", *SMALL, "--quick", option, "gamma=2", "--out", tmp_path / "r"], capfd, tmp_path,
            expect=f"{option}: invalid hyper-parameter: gamma")


def test_a_missing_run_folder_is_said_so(tmp_path, capfd):
    """Defect 7: a missing --run folder was reported as "results.json is missing"."""
    refused(["report", "--run", tmp_path / "nowhere"], capfd, tmp_path,
            expect=f"--run {tmp_path / 'nowhere'}: no such folder")


def test_bench_sweep_warms_up_before_the_first_timed_run(tmp_path, monkeypatch, capfd):
    """Defect 7: `bench sweep` counted the first unit's warm-up (compiled loops, PyTorch's first
    use) in the 1-worker run: 3.11x on 2 CPUs."""
    import o2o.cli.figure as figure
    import o2o.experiments.sweep_job as sweep_job

    calls = []
    real_warm_up, real_run = figure.warm_up, sweep_job.run_sweep

    def warm_up(sweep, folder):
        calls.append("warm-up")
        real_warm_up(sweep, folder)
        assert (folder / "cells").is_dir()   # it ran units

    def run_sweep(sweep, out, **kw):
        calls.append(f"run {kw['workers']}")
        return real_run(sweep, out, **kw)

    monkeypatch.setattr(figure, "warm_up", warm_up)
    monkeypatch.setattr(sweep_job, "run_sweep", run_sweep)
    spec = tmp_path / "spec.yaml"
    spec.write_text(tiny_spec(methods="[ratc, bound, offline-only, o2o-drl]"))
    assert main(["bench", "sweep", str(spec), "--workers", "1", "2", "--json"]) == 0
    assert calls == ["warm-up", "run 1", "run 2"]


@pytest.mark.parametrize("name", ["fig5a", "fig5b", "fig5c"])
def test_figure_comments_name_the_heuristic_whose_logs_train(name):
    """Defect 7: fig5a/b/c.yaml said the models learn from RATC's logs; they learn from the
    learner settings' logging heuristic (spread)."""
    from o2o.experiments.sweeps import load_sweep, shipped_spec_path

    comment = "".join(line for line in shipped_spec_path(name).read_text().splitlines(True)
                      if line.startswith("#"))
    logging = {p.logging for p in load_sweep(name, "quick", shipped=True).points}
    assert logging == {"spread"} and "project settings: spread" in comment
    assert "RATC" not in comment


def test_testbed_online_rounds_times_episodes_are_bounded(tmp_path, capfd):
    refused(["testbed", "o2o", "--online-rounds", "1000", "--episodes-per-round", "1000",
             "--store", tmp_path / "store", "--db", tmp_path / "tb.db"], capfd, tmp_path,
            expect="--online-rounds x --episodes-per-round = 1,000,000 testbed episodes")
