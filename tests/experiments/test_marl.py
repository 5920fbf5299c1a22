"""The external MARL baselines (the ``marl`` extra): the TorchRL env over the batched engine,
the BenchMARL task, and a smoke run of each algorithm on a tiny scenario. Skipped without the
extra."""

import json

import numpy as np
import pytest

pytest.importorskip("benchmarl")
torch = pytest.importorskip("torch")

from o2o.core import seeds  # noqa: E402
from o2o.core.decpomdp import central_shared  # noqa: E402
from o2o.experiments.marl.env import OffloadTorchEnv, scenario_and_network, task_config  # noqa: E402
from o2o.experiments.marl.results import ALGORITHMS, marl_rows  # noqa: E402
from o2o.experiments.marl.train import batch_episodes, run_marl  # noqa: E402
from o2o.sim.env import OffloadVecEnv  # noqa: E402
from o2o.sim.rollout import simulate  # noqa: E402

TINY = ["nodes=3", "slots=5"]


def test_torchrl_env_specs_and_lockstep_episodes():
    from torchrl.envs.utils import check_env_specs

    sc, net = scenario_and_network(task_config("paper-sim", TINY, 0))
    env = OffloadTorchEnv(sc, net, seeds.online(2), num_envs=4)
    check_env_specs(env)
    env.episodes_used = 0
    td = env.rollout(12, break_when_any_done=False)   # 2 episodes and 2 steps of a third
    assert td.batch_size == (4, 12)
    done = td["next", "done"][..., 0]
    assert done[:, 4].all() and done[:, 9].all() and done.sum() == 8
    assert env.episodes_used == 12                      # three resets of 4 episodes
    # The first episode is seeds online(2)[0:4] of the vector env, step by step.
    vec = OffloadVecEnv(sc, net)
    obs, mask = vec.reset(seeds.online(2).take(4))
    for t in range(5):
        np.testing.assert_array_equal(td["agents", "observation"][:, t].numpy(), obs)
        np.testing.assert_array_equal(td["agents", "action_mask"][:, t].numpy(), mask)
        np.testing.assert_array_equal(td["state"][:, t].numpy(), central_shared(obs))
        obs, mask, reward, _, _ = vec.step(td["agents", "action"][:, t].numpy())
        np.testing.assert_array_equal(td["next", "reward"][:, t, 0].numpy(), reward)
    # Random actions respect the masks (the env refuses any other).
    taken = td["agents", "action"]
    assert td["agents", "action_mask"].gather(-1, taken[..., None]).all()


def test_fixed_episodes_replay_and_match_simulate():
    """An env on a fixed list of seeds evaluates those episodes: the success rates of a rule
    that keeps every task local equal ``simulate``'s with the ``local`` heuristic."""
    from o2o.sim import make_scheduler

    sc, net = scenario_and_network(task_config("paper-sim", TINY, 1))
    test = seeds.TEST.take(3)
    env = OffloadTorchEnv(sc, net, test, num_envs=3)

    def local(td):
        mask = td["agents", "action_mask"]
        own = torch.arange(3).expand(mask.shape[:-1])
        td["agents", "action"] = torch.where(mask[..., -1], torch.full_like(own, 3), own)
        return td

    for _ in range(2):  # every reset replays the same episodes
        env.rollout(5, policy=local, break_when_any_done=True)
        np.testing.assert_allclose(env.success_rates(), simulate(sc, net, test, make_scheduler("local"))["success_rate"])


def test_refused_actions_are_replaced_and_counted():
    """A node with a task that chooses N (no task) keeps its task; a node without a task takes
    N whatever it chose. Always choosing N is then the ``local`` heuristic, and the count of
    replaced actions is the number of tasks."""
    from o2o.core.episodes import sample_episodes
    from o2o.sim import make_scheduler

    sc, net = scenario_and_network(task_config("paper-sim", TINY, 1))
    test = seeds.TEST.take(3)
    env = OffloadTorchEnv(sc, net, test, num_envs=3)

    def always(action):
        def policy(td):
            td["agents", "action"] = torch.full(td["agents", "action_mask"].shape[:-1], action)
            return td
        return policy

    env.rollout(5, policy=always(3), break_when_any_done=True)
    tasks = int(sample_episodes(sc, net, test).has_task.sum())
    assert env.replaced_actions == tasks and env.node_slots == 3 * 5 * 3
    np.testing.assert_allclose(env.success_rates(), simulate(sc, net, test, make_scheduler("local"))["success_rate"])
    env.replaced_actions = 0
    env.rollout(5, policy=always(0), break_when_any_done=True)  # node 0 itself, or no task
    assert env.replaced_actions == 3 * 5 * 3 - tasks


def test_batch_episodes_divide_the_budget():
    assert batch_episodes(100, 400) == 50      # paper-sim: 5000 frames per batch, 8 batches
    assert batch_episodes(100, 2000) == 50
    assert batch_episodes(5, 40) == 40
    assert batch_episodes(700, 400) == 10      # longer than BenchMARL's batch: one slot each


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_algorithm_trains_and_evaluates_on_the_test_episodes(algorithm, tmp_path):
    changes = {"on_policy_n_minibatch_iters": 1, "on_policy_minibatch_size": 50,
               "off_policy_n_optimizer_steps": 2, "off_policy_train_batch_size": 16}
    report = run_marl(algorithm, "paper-sim", TINY, 0, tmp_path, lr_grid=(5e-4,), eval_episodes=4,
                      validation_episodes=2, episodes=20, changes=changes, log=lambda _m: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["per_episode"] == report["per_episode"] and len(saved["per_episode"]) == 4
    assert all(0.0 <= x <= 1.0 for x in saved["per_episode"])
    assert saved["evaluation_seeds"] == seeds.TEST.take(4)
    trial = saved["hyper_parameters"]["trials"][0]
    assert saved["budget"]["env_steps"] == 100 == trial["frames"]
    assert 0.0 <= trial["replaced_actions_training"] <= 1.0 and 0.0 <= saved["replaced_actions"] <= 1.0
    if algorithm != "masac":  # masked with minus infinity: never a refused action
        assert trial["replaced_actions_training"] == 0.0 == saved["replaced_actions"]
    run = {"o2o-drl": {"per_episode": [1.0] * 4}, "evaluation_seeds": seeds.TEST.take(4),
           "network_seed": 0, "scenario": saved["scenario"]}
    row = marl_rows(run, [tmp_path])[f"marl-{algorithm}-x1-lr0.0005"]
    assert row["o2o_minus"]["diff"] == pytest.approx(1.0 - np.mean(saved["per_episode"]))


def test_run_and_report_add_marl_rows_paired_on_the_same_episodes(tmp_path, capsys):
    from o2o.cli.main import main

    scenario = ["nodes=4", "slots=10"]
    tiny = {"lr_grid": (5e-4,), "eval_episodes": 3, "validation_episodes": 2, "episodes": 20,
            "changes": {"on_policy_n_minibatch_iters": 1, "on_policy_minibatch_size": 50},
            "log": lambda _m: None}
    run_marl("ippo", "paper-sim", scenario, 0, tmp_path / "ippo", **tiny)
    run_marl("ippo", "paper-sim", scenario, 1, tmp_path / "other-net", **tiny)
    args = ["run", "--set", "nodes=4", "--set", "slots=10", "--seeds", "1", "--log-episodes", "4",
            "--offline-steps", "20", "--online-episodes", "8", "--eval-episodes", "3", "--quick",
            "--workers", "1", "--json"]
    # A result of another network is refused before anything is written.
    assert main([*args, "--out", str(tmp_path / "refused"), "--marl", str(tmp_path / "other-net")]) == 2
    assert "network seed differ" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    out = tmp_path / "run"
    assert main([*args, "--out", str(out), "--marl", str(tmp_path / "ippo")]) == 0
    printed = json.loads(capsys.readouterr().out)
    row = printed["marl"]["marl-ippo-x1-lr0.0005"]
    saved = json.loads((out / "results.json").read_text())
    o2o = np.array(saved["o2o-drl"]["per_episode"])
    assert row["o2o_minus"]["diff"] == pytest.approx(np.mean(o2o - np.array(row["per_episode"])))
    assert "marl-ippo-x1-lr0.0005" in (out / "results.md").read_text()
    # The same rows from the run's results file alone (no models needed).
    assert main(["marl", "compare", "--run-results", str(out / "results.json"), "--marl",
                 str(tmp_path / "ippo"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["marl-ippo-x1-lr0.0005"]["o2o_minus"] == row["o2o_minus"]
    # The report recomputes the run and keeps (or replaces) the rows.
    assert main(["report", "--run", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["marl-ippo-x1-lr0.0005"] == row["o2o_minus"]
    assert "marl-ippo-x1-lr0.0005" in (out / "results.md").read_text()
    assert main(["report", "--run", str(out), "--marl", str(tmp_path / "other-net")]) == 2
    assert main(["report", "--run", str(out), "--marl", str(tmp_path / "none")]) == 2
    assert "holds no 'o2o marl' result" in capsys.readouterr().err


def test_marl_train_command_gives_o2o_drls_budget(tmp_path, capsys):
    """``o2o marl train`` at --budget-x 1: Plan.online_episodes (400) episodes of T slots."""
    from o2o.cli.main import main
    from o2o.experiments.methods import Plan

    out = tmp_path / "ippo"
    assert main(["marl", "train", "--algorithm", "ippo", "--set", "nodes=3", "--set", "slots=2",
                 "--lr-grid", "0.0005", "--eval-episodes", "2", "--validation-episodes", "1",
                 "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["budget"]["env_steps"] == Plan().online_episodes * 2 == 800
    saved = json.loads((out / "results.json").read_text())
    assert saved["hyper_parameters"]["trials"][0]["frames"] == 800
    assert saved["hyper_parameters"]["evaluation"] in ("deterministic", "sampled")
    assert main(["marl", "train", "--algorithm", "ippo", "--out", str(out)]) == 2  # finished


def test_a_result_of_other_episodes_is_refused_naming_the_options(monkeypatch):
    from o2o.core.errors import UserError
    from o2o.experiments.marl import results

    run = {"o2o-drl": {"per_episode": [0.9] * 10}, "scenario": "paper-sim", "network_seed": 0,
           "evaluation_seeds": list(range(1_000_000, 1_000_010))}
    other = {"method": "marl-mappo", "budget": {"budget_x": 1}, "hyper_parameters": {"lr": 5e-5},
             "scenario": "paper-sim", "network_seed": 0, "evaluation_seeds": list(range(1_000_000, 1_000_020))}
    monkeypatch.setattr(results, "load_results", lambda folder: other)
    with pytest.raises(UserError, match="evaluation seeds differ.*--eval-episodes.*10 held-out episodes"):
        marl_rows(run, ["m"])
