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

