"""A tiny offline -> online run end to end, its determinism, and the command line."""

import json

import numpy as np
import pytest
import torch

from o2o.cli.main import main
from o2o.core.errors import UserError
from o2o.core.metrics import success_rate
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.core.seeds import online as online_seeds
from o2o.learn.evaluate import make_eval_fn
from o2o.learn.offline import train_offline
from o2o.learn.online import train_online
from o2o.learn.settings import OfflineSettings, OnlineSettings
from o2o.learn.tracking import Tracker
from o2o.logs.dataset import check_dataset, load_dataset, simulated_dataset
from o2o.sim import make_scheduler

OVERRIDES = ["nodes=4", "slots=10"]
SC = load_scenario("paper-sim", OVERRIDES)
NET = sample_network(SC, 0)
SCENARIO_ARGS = ["--scenario", "paper-sim", "--set", "nodes=4", "--set", "slots=10"]


@pytest.fixture(scope="module")
def data():
    return simulated_dataset(SC, NET, make_scheduler("ratc"), range(100, 106), reward_credit="decision")


def test_dataset_layout(data):
    m = 6 * 10 * 4
    assert data["observations"].shape == (m, 18) and data["observations"].dtype == np.float32
    assert data["action_masks"].shape == (m, 5) and data["actions"].dtype == np.int64
    no_task = data["action_masks"][:, 4]
    assert (data["actions"][no_task] == 4).all() and (data["actions"][~no_task] < 4).all()
    assert data["terminals"].sum() == 6 * 4
    # rows of one slot share the team reward
    assert np.all(data["rewards"].reshape(6, 10, 4) == data["rewards"].reshape(6, 10, 4)[:, :, :1])
    # next observation of slot t is the observation of slot t + 1
    o = data["observations"].reshape(6, 10, 4, 18)
    np.testing.assert_array_equal(data["next_observations"].reshape(6, 10, 4, 18)[:, :-1], o[:, 1:])
    with pytest.raises(UserError, match="is for 4 nodes"):
        check_dataset(data, n=20)
    with pytest.raises(UserError, match="lacks rewards"):
        check_dataset({k: v for k, v in data.items() if k != "rewards"})


def _weights(module):
    return [p.detach().clone() for p in module.parameters()]


def test_offline_then_online_is_deterministic_and_runs(data, tmp_path):
    torch.set_num_threads(1)
    settings = OfflineSettings(batch_size=64, alpha=0.2, eval_every=20)
    eval_fn = make_eval_fn(SC, NET, [0, 1])
    with Tracker(tmp_path / "logs") as tracker:
        r1 = train_offline(data, settings, seed=3, steps=40, callback=eval_fn, tracker=tracker,
                           show_progress=False)
    r2 = train_offline(data, settings, seed=3, steps=40, show_progress=False)
    for a, b in zip(_weights(r1.policy.actor), _weights(r2.policy.actor)):
        assert torch.equal(a, b)
    assert [h["step"] for h in r1.history if "success_rate" in h] == [20, 40]
    records = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert {"q_loss", "cql", "v_loss", "entropy"} <= set(records[0]) and records[0]["phase"] == "offline"
    assert list((tmp_path / "logs" / "tensorboard").iterdir())

    online = OnlineSettings(episodes_per_batch=4, minibatch_size=64)
    runs = []
    for _ in range(2):
        off = train_offline(data, settings, seed=3, steps=40, show_progress=False)
        assert off.policy.reward_credit == "decision"   # read from the data set
        res = train_online(SC, NET, off.policy, online, episodes=8, seed=5,
                           eval_every=4, eval_fn=eval_fn, show_progress=False)
        runs.append(res)
    assert [p["episodes"] for p in runs[0].curve] == [0, 4, 8]
    # the curve starts at the offline actor: episode 0 equals offline-only
    assert runs[0].curve[0]["success_rate"] == eval_fn(r1.policy.actor)["success_rate"]
    for a, b in zip(_weights(runs[0].policy.actor), _weights(runs[1].policy.actor)):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(_weights(r1.policy.actor), _weights(runs[0].policy.actor)))
    assert len(runs[0].history) == 2 and "ppo_objective" in runs[0].history[0]
    # Every training episode is recorded as collected: its online(5) seed, tasks and successes,
    # which give each batch's training success rate again.
    res = runs[0]
    assert res.episode_seeds == online_seeds(5).take(8)
    assert len(res.episode_tasks) == len(res.episode_success) == 8 and runs[1].episode_success == res.episode_success
    rates = success_rate(res.episode_success, res.episode_tasks)
    assert [float(rates[i:i + 4].mean()) for i in (0, 4)] == [h["train_success_rate"] for h in res.history]
    scratch = train_online(SC, NET, None, online, episodes=4, seed=5, show_progress=False)
    assert scratch.episodes == 4


def test_commands(data, tmp_path, capsys):
    ds = tmp_path / "ratc.npz"
    np.savez(ds, **data)  # a user's own data set: the core arrays only
    assert load_dataset(ds)["actions"].shape == data["actions"].shape
    off_dir, on_dir, scratch_dir = tmp_path / "off", tmp_path / "on", tmp_path / "scratch"
    assert main(["train", "offline", "--dataset", str(ds), "--out", str(off_dir), "--steps", "30",
                 "--set-hparam", "batch_size=32", "--set-hparam", "actor_head=plain",
                 "--eval-episodes", "2", "--json", *SCENARIO_ARGS]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 30 and 0 <= out["success_rate"] <= 1
    manifest = json.loads((off_dir / "manifest.json").read_text())
    assert manifest["training"]["phase"] == "offline" and manifest["training"]["settings"]["batch_size"] == 32
    assert (off_dir / "logs" / "metrics.jsonl").exists()

    assert main(["train", "online", "--model", str(off_dir), "--out", str(on_dir), "--episodes", "4",
                 "--set-hparam", "episodes_per_batch=2", "--eval-every", "2", "--eval-episodes", "2",
                 "--json", *SCENARIO_ARGS]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["episodes"] for p in out["curve"]] == [0, 2, 4]
    # The project settings' scorer actor needs a data set of layout v2.
    assert main(["train", "offline", "--dataset", str(ds), "--out", str(tmp_path / "v"), *SCENARIO_ARGS]) == 2
    assert "--obs-layout o2o-obs-v2" in capsys.readouterr().err
    assert main(["train", "online", "--from-scratch", "--out", str(scratch_dir), "--episodes", "2",
                 "--set-hparam", "episodes_per_batch=2", "--eval-episodes", "0", "--json",
                 *SCENARIO_ARGS]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(on_dir), "--scheduler", "ratc", "--episodes", "3",
                 "--json", *SCENARIO_ARGS]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table) == {"drl", "ratc", "bound", "bound-task", "bound_episodes"}
    assert table["drl"]["tasks"] == table["ratc"]["tasks"] and table["bound"] <= table["bound-task"]
    assert main(["evaluate", "--model", str(on_dir), "--episodes", "2", *SCENARIO_ARGS]) == 0
    assert "success rate" in capsys.readouterr().out

    # user errors: exit code 2 with a message saying what to change
    bad = [
        ["train", "offline", "--dataset", str(tmp_path / "none.npz"), "--out", str(tmp_path / "x"), *SCENARIO_ARGS],
        ["train", "offline", "--dataset", str(ds), "--out", str(tmp_path / "x"), "--scenario", "paper-sim"],
        ["train", "offline", "--dataset", str(ds), "--out", str(tmp_path / "x"), "--set-hparam", "nope=1", *SCENARIO_ARGS],
        ["train", "online", "--out", str(tmp_path / "y"), "--episodes", "2", *SCENARIO_ARGS],
        ["train", "online", "--model", str(off_dir), "--from-scratch", "--out", str(tmp_path / "y"),
         "--episodes", "2", *SCENARIO_ARGS],
        ["train", "online", "--model", str(off_dir), "--out", str(tmp_path / "y"), "--episodes", "2",
         "--scenario", "paper-sim"],
        ["evaluate", "--model", str(tmp_path / "missing"), *SCENARIO_ARGS],
    ]
    for argv in bad:
        assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "does not exist" in err and "is for 4 nodes" in err and "unknown hyper-parameter" in err
    assert "--from-scratch" in err and "manifest.json is missing" in err
