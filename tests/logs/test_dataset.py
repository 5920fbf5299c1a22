"""The exported data set: its documented layout, readable by numpy alone, equal to the
transitions rebuilt from the logs."""

from __future__ import annotations

import numpy as np
import pytest

from o2o.cli.main import main
from o2o.core.episodes import sample_episodes
from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.logs.dataset import ARRAYS, build_dataset, load_dataset, save_dataset
from o2o.logs.records import episode_logs_from_rollout
from o2o.logs.store import LogStore
from o2o.logs.transitions import rebuild_transitions
from o2o.sim import make_scheduler

BUSY = ["nodes=5", "slots=12", "arrival_prob=[0.7, 1.0]", "queue_coef=1", "deadline_s=[2, 6]",
        "cores=[4, 8]", "node_fail_rate=[0, 0.3]", "link_fail_rate=[0, 0.2]",
        "link_rate_mbps=[2, 8]", "task_size_kb=[500, 3000]"]
N, T = 5, 12


@pytest.fixture
def logged(tmp_path):
    """A task log with two runs (RATC, then random) of the busy scenario."""
    scenario = load_scenario("paper-sim", BUSY)
    network = sample_network(scenario, 4)
    db = str(tmp_path / "d.db")
    logs = {}
    with LogStore.open(db, create=True) as store:
        for name, seeds in (("ratc", [0, 1, 2]), ("random", [5, 6])):
            episodes = sample_episodes(scenario, network, seeds)
            logs[name] = episode_logs_from_rollout(scenario, network, episodes, make_scheduler(name))
            with store.start_run(scenario, network, name) as run:
                run.write_episodes(logs[name])
    return db, scenario, network, logs


@pytest.mark.parametrize("credit", ["slot", "decision"])
def test_exported_file_has_the_documented_layout(logged, tmp_path, credit):
    db, scenario, network, logs = logged
    out = tmp_path / "all.npz"
    assert main(["dataset", "export", "--db", db, "--out", str(out), "--reward-credit", credit]) == 0
    with np.load(out, allow_pickle=False) as npz:  # numpy alone, no pickle
        data = {k: npz[k] for k in npz.files}
    assert set(data) == set(ARRAYS)
    m = 5 * T * N
    d, a = 3 * N + 6, N + 1
    expect = {"observations": (np.float32, (m, d)), "next_observations": (np.float32, (m, d)),
              "actions": (np.int64, (m,)), "rewards": (np.float32, (m,)),
              "terminals": (np.bool_, (m,)), "action_masks": (np.bool_, (m, a)),
              "next_action_masks": (np.bool_, (m, a)), "episode_ids": (np.int64, (m,)),
              "node_ids": (np.int64, (m,)), "run_ids": (np.int64, (m,)), "slots": (np.int64, (m,)),
              "action_probs": (np.float32, (m,))}
    for key, (dtype, shape) in expect.items():
        assert data[key].dtype == dtype and data[key].shape == shape, key
    assert str(data["obs_layout"]) == "o2o-obs-v1" and str(data["reward_credit"]) == credit
    # Row order: run, episode, slot, node.
    assert data["node_ids"].tolist() == list(range(N)) * (5 * T)
    assert data["slots"].tolist() == list(np.repeat(np.arange(T), N)) * 5
    assert data["run_ids"].tolist() == [1] * (3 * T * N) + [2] * (2 * T * N)
    assert np.all(np.diff(data["episode_ids"]) >= 0) and np.unique(data["episode_ids"]).size == 5
    assert np.array_equal(data["terminals"], data["slots"] == T - 1)
    # Rows equal the transitions rebuilt in memory, run by run.
    for run_id, name in ((1, "ratc"), (2, "random")):
        tr = rebuild_transitions(scenario, network, logs[name], credit)
        rows = data["run_ids"] == run_id
        assert np.array_equal(data["observations"][rows], tr.observations.reshape(-1, d))
        assert np.array_equal(data["next_observations"][rows], tr.next_observations.reshape(-1, d))
        assert np.array_equal(data["action_masks"][rows], tr.action_masks.reshape(-1, a))
        assert np.array_equal(data["next_action_masks"][rows], tr.next_action_masks.reshape(-1, a))
        assert np.array_equal(data["actions"][rows], tr.actions.reshape(-1))
        assert np.array_equal(data["rewards"][rows], tr.rewards.reshape(-1))
    # Rows without a task: only the no-task action, and that action was taken.
    idle = data["actions"] == N
    assert np.all(data["action_masks"][idle] == np.eye(a, dtype=bool)[N])
    assert np.all(data["observations"][idle][:, 3 * N + 3:] == 0)
    # Rewards are not normalised: team sums of +-1 outcomes.
    assert np.array_equal(data["rewards"], np.round(data["rewards"]))
    # Random's probabilities are known (1/N), RATC's are not.
    busy = ~idle
    assert np.all(data["action_probs"][busy & (data["run_ids"] == 2)] == np.float32(1 / N))
    assert np.all(np.isnan(data["action_probs"][busy & (data["run_ids"] == 1)]))
    assert np.all(np.isnan(data["action_probs"][idle]))


def test_python_function_equals_the_file_and_loads_back(logged, tmp_path):
    db, *_ = logged
    data = build_dataset(db, run_ids=[2])
    path = save_dataset(data, tmp_path / "random")  # the suffix is added
    assert path.name == "random.npz"
    back = load_dataset(path)
    assert set(back) == set(data)
    for key in data:
        assert back[key].dtype == data[key].dtype
        assert np.array_equal(back[key], data[key], equal_nan=back[key].dtype.kind == "f"), key
    assert set(data["run_ids"].tolist()) == {2} and data["actions"].shape == (2 * T * N,)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(UserError, match="is not a .npz data set"):
        load_dataset(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(UserError, match="not an o2o data set"):
        load_dataset(tmp_path / "other.npz")
    with pytest.raises(UserError, match="reward-credit"):
        build_dataset(db, reward_credit="episode")
