"""Scenarios: presets, YAML files, overrides and refusals that name the field."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2o.core.scenario import PRESETS, ScenarioError, load_scenario


def test_presets_match_the_spec_table():
    sim = load_scenario("paper-sim")
    assert (sim.nodes, sim.slot_s, sim.slots, sim.deadline_s) == (20, 0.5, 100, (4.0, 4.0))
    assert sim.task_size_kb == (1000, 8000) and sim.complexity == (800, 2400)
    assert sim.cores == (4, 8, 16, 20, 24, 28, 32) and sim.core_hz == 3e9
    assert sim.link_rate_mbps == (10, 40) and sim.node_fail_rate == (0, 0.1)
    assert sim.link_fail_rate == (0, 0.03) and sim.queue_coef == 3.0
    tb = load_scenario("paper-testbed")
    assert (tb.nodes, tb.slot_s, tb.slots, tb.deadline_s) == (10, 0.1, 50, (1.0, 1.0))
    assert tb.task_size_kb == (500, 2500) and tb.complexity == (400, 800)
    assert set(PRESETS) == {"paper-sim", "paper-testbed"}


def test_overrides_read_yaml_values():
    sc = load_scenario("paper-sim", ["arrival_prob=[0,0.6]", "nodes=5", "deadline_s=[2, 3]"])
    assert sc.arrival_prob == (0.0, 0.6) and sc.nodes == 5 and sc.deadline_s == (2.0, 3.0)


def test_yaml_file_with_preset_base(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("preset: paper-testbed\nnodes: 4\nslots: 20\n")
    sc = load_scenario(f, ["slot_s=0.2"])
    assert (sc.nodes, sc.slots, sc.slot_s, sc.task_size_kb) == (4, 20, 0.2, (500, 2500))
    assert sc.name == "mine"


@pytest.mark.parametrize("override, field", [
    ("arrival_prob=[0.5, 0.2]", "arrival_prob"),
    ("arrival_prob=[0, 1.5]", "arrival_prob"),
    ("nodes=1", "nodes"),
    ("link_rate_mbps=[0, 10]", "link_rate_mbps"),
    ("slot_s=0", "slot_s"),
    ("colour=blue", "colour"),
    ("deadline_s=[1, 2, 3]", "deadline_s"),
    ("cores=[]", "cores"),
])
def test_bad_values_are_refused_naming_the_field(override, field):
    with pytest.raises(ScenarioError, match=field):
        load_scenario("paper-sim", [override])


def test_unknown_preset_or_bad_file(tmp_path):
    with pytest.raises(ScenarioError, match="neither a preset"):
        load_scenario("paper-foo")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="key=value"):
        load_scenario("paper-sim", ["nodes"])


@settings(max_examples=40, deadline=None)
@given(field=st.sampled_from(["task_size_kb", "complexity", "deadline_s", "link_rate_mbps",
                              "node_fail_rate", "link_fail_rate", "arrival_prob"]),
       value=st.sampled_from([".nan", ".inf", "-.inf"]), end=st.integers(0, 1))
def test_non_finite_values_are_refused_naming_the_field(field, value, end):
    ends = ["0.5", "0.5"]
    ends[end] = value
    with pytest.raises(ScenarioError, match=f"{field}.{end}: Input should be a finite number"):
        load_scenario("paper-sim", [f"{field}=[{ends[0]}, {ends[1]}]"])


@pytest.mark.parametrize("override,match", [
    ("nodes=100000", "nodes: Input should be less than or equal to 1024"),
    ("slots=10000000", "slots: Input should be less than or equal to 100000"),
    ("slot_s=.inf", "slot_s: Input should be a finite number"),
    ("core_hz=.nan", "core_hz: Input should be a finite number"),
])
def test_sizes_beyond_the_supported_ranges(override, match):
    with pytest.raises(ScenarioError, match=match):
        load_scenario("paper-sim", [override])


def test_bad_files_give_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("preset: paper-sim\nnodes: [1, 2\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(tmp_path / "bad.yaml")
    assert "line 3 column 1: not valid YAML" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ScenarioError, match="is not UTF-8 text"):
        load_scenario(tmp_path / "latin1.yaml")
