"""The reference data-set suite: built from seeds alone (two builds give the same bytes), its
data sets equal to the behaviour's simulated logs, its splits in their seed ranges, and its
reference scores and normalisation as the manifest says."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from o2o.cli.main import main
from o2o.core.seeds import LOGS, TEST, VALIDATION
from o2o.experiments.suite_policies import tuned_factory
from o2o.experiments.tuning import tune_rule
from o2o.logs.dataset import simulated_dataset
from o2o.logs.suite import (
    MANIFEST,
    MIXTURE,
    SAME_INFORMATION,
    Suite,
    build_suite,
    mixture_draws,
    normalised_score,
    suite_spec,
)
from o2o.logs.suite_format import compact, expand, npz_bytes
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

TINY = suite_spec("tiny")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    build_suite(TINY, folder, tuned_factory(TINY.tuned))
    return Suite(folder)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def test_two_builds_are_byte_identical(tiny, tmp_path):
    build_suite(TINY, tmp_path, tuned_factory(TINY.tuned))
    first = sorted(p.name for p in tiny.folder.iterdir())
    assert first == sorted(p.name for p in tmp_path.iterdir())
    for name in first:
        assert (tiny.folder / name).read_bytes() == (tmp_path / name).read_bytes(), name
    # ... and the manifest's checksums are those of the files.
    for behaviour in tiny.cell(0, "default")["datasets"].values():
        for entry in behaviour.values():
            blob = (tmp_path / entry["file"]).read_bytes()
            assert (len(blob), hashlib.sha256(blob).hexdigest()) == (entry["bytes"], entry["sha256"])


def test_npz_bytes_do_not_depend_on_the_clock(monkeypatch):
    arrays = {"a": np.arange(5), "b": np.array("text")}
    first = npz_bytes(arrays)
    monkeypatch.setattr("time.time", lambda: 2e9)
    assert npz_bytes(arrays) == first
    with np.load(__import__("io").BytesIO(first)) as npz:
        assert npz["a"].tolist() == [0, 1, 2, 3, 4] and str(npz["b"]) == "text"


def test_a_behaviour_data_set_is_its_simulated_logs(tiny):
    cell = tiny.cell(0, "default")
    scenario, network = tiny.scenario_network(cell)
    for split in ("train", "validation"):
        seeds = [s for s in tiny.split_seeds(split)][:cell["datasets"]["ratc"][split]["episodes"]]
        want = simulated_dataset(scenario, network, make_scheduler("ratc"), seeds, "node",
                                 obs_layout="o2o-obs-v2")
        got = tiny.dataset(cell, "ratc", split)
        assert sorted(got) == sorted(want)
        for key in want:
            assert _same(got[key], want[key]), key
        rate = simulate(scenario, network, seeds, make_scheduler("ratc"))["success_rate"].mean()
        assert cell["datasets"]["ratc"][split]["success_rate"] == pytest.approx(rate, abs=1e-12)


def test_the_same_information_rule_is_tuned_on_validation_episodes(tiny):
    cell = tiny.cell(0, "default")
    scenario, network = tiny.scenario_network(cell)
    record = tune_rule(scenario, network, SAME_INFORMATION, network_seed=0)
    kept = cell["parameters"][SAME_INFORMATION]
    assert kept["params"] == record["params"] and kept["validation_seeds"] == record["validation_seeds"]
    assert all(s in VALIDATION for s in kept["validation_seeds"])
    seeds = tiny.split_seeds("train")
    want = simulated_dataset(scenario, network, make_scheduler(SAME_INFORMATION, record["params"]),
                             seeds, "node", obs_layout="o2o-obs-v2")
    got = tiny.dataset(cell, SAME_INFORMATION)
    assert all(_same(got[k], want[k]) for k in want)
    tuned_rate = simulate(scenario, network, tiny.split_seeds("test"),
                          make_scheduler(SAME_INFORMATION, record["params"]))["success_rate"].mean()
    assert cell["test_scores"][SAME_INFORMATION]["success_rate"] == pytest.approx(tuned_rate, abs=1e-12)


def test_the_mixture_runs_each_episode_with_its_drawn_component(tiny):
    cell = tiny.cell(0, "default")
    scenario, network = tiny.scenario_network(cell)
    stored = tiny.stored(cell, MIXTURE)
    draws = stored["episode_behaviours"].tolist()
    assert draws == mixture_draws(TINY, 0, 0, "train", TINY.train_episodes)
    assert set(draws) <= set(TINY.mixture_of)
    data = tiny.dataset(cell, MIXTURE)
    rows = scenario.slots * network.n
    params = {n: p["params"] for n, p in cell["parameters"].items()}
    for k, (seed, name) in enumerate(zip(tiny.split_seeds("train"), draws)):
        want = simulated_dataset(scenario, network, make_scheduler(name, params.get(name)), [seed],
                                 "node", obs_layout="o2o-obs-v2")
        for key in ("observations", "actions", "rewards", "next_observations", "action_masks",
                    "action_probs", "episode_ids"):
            assert _same(data[key][k * rows:(k + 1) * rows], want[key]), (key, k)
    counts = cell["datasets"][MIXTURE]["train"]["episodes_per_component"]
    assert counts == {c: draws.count(c) for c in TINY.mixture_of}


def test_compact_refuses_rows_whose_next_observation_is_not_the_next_slot(tiny):
    cell = tiny.cell(0, "default")
    data = tiny.dataset(cell, "random")
    again = compact(data, cell["nodes"], cell["slots"], ["random"] * TINY.train_episodes)
    assert all(_same(expand(again)[k], data[k]) for k in data if data[k].ndim)
    data["next_observations"] = data["next_observations"].copy()
    data["next_observations"][0, 0] += 0.5
    with pytest.raises(ValueError, match="next slot"):
        compact(data, cell["nodes"], cell["slots"], ["random"] * TINY.train_episodes)


def test_splits_lie_in_their_seed_ranges_and_are_disjoint(tiny):
    splits = {s: tiny.split_seeds(s) for s in ("train", "validation", "test")}
    assert all(s in LOGS for s in splits["train"])
    assert all(s in VALIDATION for s in splits["validation"])
    assert all(s in TEST for s in splits["test"])
    assert [len(splits[s]) for s in splits] == [TINY.train_episodes, TINY.validation_episodes,
                                                TINY.test_episodes]
    data = tiny.dataset(tiny.cell(0, "default"), "ratc", "validation")
    assert sorted(set(data["episode_ids"].tolist())) == splits["validation"][:TINY.validation_data_episodes]


def test_reference_scores_and_normalisation(tiny):
    cell = tiny.cell(0, "default")
    scenario, network = tiny.scenario_network(cell)
    test, validation = tiny.split_seeds("test"), tiny.split_seeds("validation")
    params = {n: p["params"] for n, p in cell["parameters"].items()}
    rate = lambda name, seeds: simulate(scenario, network, seeds,  # noqa: E731
                                        make_scheduler(name, params.get(name)))["success_rate"].mean()
    best = max(TINY.references, key=lambda n: rate(n, validation))
    refs = cell["references"]
    assert refs["expert_scheduler"] == best
    assert refs["expert"] == pytest.approx(rate(best, test), abs=1e-12)
    assert refs["random"] == pytest.approx(rate("random", test), abs=1e-12)
    assert refs["central"] == pytest.approx(rate("central", test), abs=1e-12)
    assert normalised_score(refs["random"], cell) == 0.0
    assert normalised_score(refs["expert"], cell) == pytest.approx(100.0)
    assert normalised_score(refs["central"], cell, "central") == pytest.approx(100.0)
    mid = (refs["random"] + refs["expert"]) / 2
    assert normalised_score(mid, cell) == pytest.approx(50.0)


def test_cli_builds_the_suite_and_refuses_a_used_folder(tmp_path, capsys):
    out = tmp_path / "suite"
    assert main(["dataset", "build", "--suite", "tiny", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    manifest = json.loads((out / MANIFEST).read_text())
    assert summary["files"] == len(TINY.behaviours) * 2 == len(list(out.glob("*.npz")))
    assert manifest["suite"] == "tiny" and manifest["splits"]["test"]["first_seed"] == TEST.start
    before = sorted(p.name for p in out.iterdir())
    assert main(["dataset", "build", "--suite", "tiny", "--out", str(out)]) == 2
    assert "o2o: error: --out" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_suite_refuses_a_folder_without_manifest_and_unknown_cells(tiny, tmp_path):
    from o2o.core.errors import UserError

    with pytest.raises(UserError, match="not a data-set suite"):
        Suite(tmp_path)
    with pytest.raises(UserError, match="no network seed 7"):
        tiny.cell(7, "default")
    with pytest.raises(UserError, match="no behaviour"):
        tiny.stored(tiny.cell(0, "default"), "esf")


def test_unpack_writes_the_export_layout(tiny, tmp_path, capsys):
    from o2o.logs.dataset import load_dataset

    out = tmp_path / "ratc.npz"
    assert main(["dataset", "unpack", "--suite", str(tiny.folder), "--behaviour", "ratc",
                 "--split", "validation", "--out", str(out)]) == 0
    want = tiny.dataset(tiny.cell(0, "default"), "ratc", "validation")
    got = load_dataset(out)
    assert sorted(got) == sorted(want) and all(_same(got[k], want[k]) for k in want)
    assert "('o2o train offline --dataset' reads it)" in capsys.readouterr().out   # a command that exists
    before = out.read_bytes()
    assert main(["dataset", "unpack", "--suite", str(tiny.folder), "--behaviour", "ratc",
                 "--out", str(out / "in-a-file.npz")]) == 2   # a file in the way of its folder
    assert "o2o: error:" in capsys.readouterr().err and out.read_bytes() == before
