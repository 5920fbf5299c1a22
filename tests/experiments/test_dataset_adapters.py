"""The suite in outside libraries (extra ``datasets``; skipped without it): the d3rlpy loader
holds exactly the suite's arrays, DiscreteCQL, DiscreteBCQ and DiscreteBC update on it and run as
schedulers choosing only available actions, and a Minari export reads back equal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from o2o.cli import datasets as cli_datasets
from o2o.cli.main import main
from o2o.logs.suite import MIXTURE, Suite, build_suite, suite_spec
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    build_suite(suite_spec("tiny"), folder)
    return Suite(folder)


def test_trajectory_order_is_per_node_episode(tiny):
    from o2o.experiments.d3rlpy_adapter import trajectory_arrays

    cell = tiny.cell(0, "default")
    data = tiny.dataset(cell, MIXTURE)
    arrays = trajectory_arrays(data)
    n, t = cell["nodes"], cell["slots"]
    e = data["actions"].shape[0] // (n * t)
    for name in ("observations", "actions", "rewards", "action_masks"):
        by_slot = data[name].reshape(e, t, n, *data[name].shape[1:])
        assert np.array_equal(arrays[name], np.swapaxes(by_slot, 1, 2).reshape(data[name].shape)), name
    assert arrays["terminals"].reshape(e * n, t).tolist() == [[0.0] * (t - 1) + [1.0]] * (e * n)
    v1 = trajectory_arrays(data, "o2o-obs-v1")["observations"]
    assert v1.shape[1] == 3 * n + 6 and np.array_equal(v1, arrays["observations"][:, :3 * n + 6])


def test_d3rlpy_dataset_holds_the_suite_arrays(tiny):
    pytest.importorskip("d3rlpy")
    from o2o.experiments.d3rlpy_adapter import to_mdp_dataset, trajectory_arrays

    cell = tiny.cell(0, "default")
    data = tiny.dataset(cell, "ratc")
    dataset = to_mdp_dataset(data)
    arrays = trajectory_arrays(data)
    t = cell["slots"]
    assert len(dataset.episodes) == data["actions"].shape[0] // t
    assert dataset.dataset_info.action_size == cell["nodes"] + 1
    for k, ep in enumerate(dataset.episodes):
        rows = slice(k * t, (k + 1) * t)
        assert np.array_equal(ep.observations, arrays["observations"][rows])
        assert np.array_equal(ep.actions.reshape(-1), arrays["actions"][rows])
        assert np.array_equal(ep.rewards.reshape(-1), arrays["rewards"][rows])
        assert ep.terminated


@pytest.mark.parametrize("name", ["discrete_cql", "discrete_bcq", "discrete_bc"])
def test_d3rlpy_algorithm_updates_and_acts_within_the_mask(tiny, name):
    pytest.importorskip("d3rlpy")
    from o2o.experiments.d3rlpy_adapter import (
        action_scores,
        evaluate_algorithm,
        fit,
        masked_greedy,
        to_mdp_dataset,
    )

    cell = tiny.cell(0, "default")
    data = tiny.dataset(cell, "ratc")
    algo = fit(name, to_mdp_dataset(data), steps=30, seed=0)
    assert algo.grad_step == 30
    obs = data["observations"][:64]
    a = cell["nodes"] + 1
    # With every action available, the greedy choice is d3rlpy's own.
    assert np.array_equal(masked_greedy(algo, obs, np.ones((64, a), bool)), algo.predict(obs))
    rng = np.random.default_rng(0)
    mask = rng.random((64, a)) < 0.5
    mask[np.arange(64), rng.integers(0, a, 64)] = True
    chosen = masked_greedy(algo, obs, mask)
    assert mask[np.arange(64), chosen].all()
    scores = action_scores(algo, obs, mask)
    assert np.isneginf(scores[~mask]).all()
    if name == "discrete_cql":   # the Q-values, through d3rlpy's public predict_value
        q = np.stack([algo.predict_value(obs, np.full(64, j)) for j in range(a)], axis=1)
        assert np.array_equal(chosen, np.argmax(np.where(mask, q, -np.inf), axis=1))
    scenario, network = tiny.scenario_network(cell)
    seeds = tiny.split_seeds("test")
    metrics = evaluate_algorithm(algo, scenario, network, seeds, data["observations"].shape[1])
    same_tasks = simulate(scenario, network, seeds, make_scheduler("random"))["tasks"]
    assert np.array_equal(metrics["tasks"], same_tasks)
    assert ((metrics["success_rate"] >= 0) & (metrics["success_rate"] <= 1)).all()


def test_minari_export_reads_back_equal(tiny, tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    pytest.importorskip("h5py")
    from o2o.experiments.minari_export import node_episodes

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    cell = tiny.cell(0, "default")
    assert main(["dataset", "minari", "--suite", str(tiny.folder), "--behaviour", MIXTURE,
                 "--dataset-id", "o2o/tiny/mixture-train-v0", "--json"]) == 0
    dataset = minari.load_dataset("o2o/tiny/mixture-train-v0")
    stored = tiny.stored(cell, MIXTURE)
    want = node_episodes(stored)
    n, t = cell["nodes"], cell["slots"]
    assert (dataset.total_episodes, dataset.total_steps) == (len(want), len(want) * t)
    assert dataset.spec.action_space.n == n + 1
    for ep, ref in zip(dataset.iterate_episodes(), want):
        assert ep.observations.shape == (t + 1, stored["observations"].shape[1])
        assert np.array_equal(ep.observations, ref["observations"])
        assert np.array_equal(ep.actions, ref["actions"])
        assert np.array_equal(ep.rewards, ref["rewards"])
        assert np.array_equal(ep.terminations, ref["terminations"])
        assert np.array_equal(ep.infos["action_mask"], ref["action_mask"])
    # The first node-episode is node 0 of the first episode: its rows of the suite file.
    first = stored["node_ids"][:t * n].reshape(t, n)[:, 0]
    assert first.tolist() == [0] * t
    assert np.array_equal(want[0]["actions"], stored["actions"][:t * n].reshape(t, n)[:, 0])
    # The same id again is refused in one line, nothing overwritten.
    assert main(["dataset", "minari", "--suite", str(tiny.folder), "--behaviour", MIXTURE,
                 "--dataset-id", "o2o/tiny/mixture-train-v0"]) == 2
    # Without --dataset-id a suite without a numbered version (tiny) exports as -v0, not a TypeError.
    assert main(["dataset", "minari", "--suite", str(tiny.folder), "--behaviour", MIXTURE, "--json"]) == 0
    scenario = tiny.manifest["scenario"]
    assert minari.load_dataset(f"o2o/{scenario}-net0-default/{MIXTURE}-train-v0").total_episodes == len(want)


def test_bench_cli_prints_normalised_scores(tiny, capsys):
    pytest.importorskip("d3rlpy")
    capsys.readouterr()
    assert main(["dataset", "bench", "--suite", str(tiny.folder), "--behaviour", "ratc",
                 "--method", "discrete_bc", "--steps", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    refs = out["cell"]["references"]
    behaviour, bc = out["rows"]
    assert behaviour["method"] == "behaviour policy"
    assert behaviour["success_rate"] == tiny.cell(0, "default")["test_scores"]["ratc"]["success_rate"]
    assert bc["method"] == "discrete_bc" and bc["steps"] == 20
    for row in out["rows"]:
        want = 100 * (row["success_rate"] - refs["random"]) / (refs["expert"] - refs["random"])
        assert row["normalised_expert"] == pytest.approx(want)


def test_bench_refuses_unknown_names(tiny, capsys):
    for extra in (["--behaviour", "esf"], ["--method", "dqn"], ["--load", "heavy"]):
        assert main(["dataset", "bench", "--suite", str(tiny.folder), *extra]) == 2
        assert capsys.readouterr().err.startswith("o2o: error:")


def test_cli_method_names_are_the_bench_modules():
    pytest.importorskip("torch")
    from o2o.experiments import dataset_bench

    assert cli_datasets.METHODS == dataset_bench.METHODS
    assert cli_datasets.D3RLPY_STEPS == dataset_bench.D3RLPY_STEPS
