"""The pooled critic and ``o2o train generalist`` (issue 20, goal 1): one model, actor and critic
whose weights do not depend on N, trained online across drawn networks, sizes and scenario
ranges; it runs and fine-tunes at any N of its nodes_range and refuses the rest."""

import copy
import json

import numpy as np
import pytest
import torch

from o2o.cli.main import main
from o2o.core.decpomdp import (
    OBS_LAYOUT_V3,
    POOLED_CRITIC_FEATURES,
    FeatureScales,
    covering_scales,
    critic_dim,
    pooled_critic_input,
)
from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.core.seeds import online as online_seeds
from o2o.experiments.teacher import teacher_datasets
from o2o.experiments.tuning import WIDE_GRIDS
from o2o.learn.distribution import LEVELS, Distribution, TeacherPlan
from o2o.learn.generalist import train_offline_across
from o2o.learn.nets import Critic
from o2o.learn.online import OnlinePPO, initial_policy
from o2o.learn.policy import Policy
from o2o.learn.settings import learner_settings
from o2o.models import ModelError, load_model, scenario_ranges
from tests.test_obs_v3 import inputs, observe

SETTINGS = learner_settings("project", online=["critic_input=pooled", "hidden=[8, 8]"],
                            obs_layout=OBS_LAYOUT_V3).online


def v3_obs(n, seed=0):
    sc = load_scenario("paper-sim", [f"nodes={n}", "slots=10"])
    return observe(sc, sample_network(sc, seed), OBS_LAYOUT_V3, inputs(n, seed=seed))


# ------------------------------------------------------------------------------ pooled critic
def test_pooled_critic_input_by_hand():
    # Two candidates: node part, then blocks 1-9 pooled (mean, max) over the candidates.
    n = 2
    obs = np.zeros(7 + 10 * n, dtype=np.float32)
    obs[:7] = np.arange(1, 8) / 10
    blocks = np.arange(10 * n, dtype=np.float32).reshape(10, n) / 100  # block b, candidate j
    obs[7:] = blocks.ravel()
    got = pooled_critic_input(obs)
    assert got.shape == (POOLED_CRITIC_FEATURES,) == (7 + 18,)
    np.testing.assert_allclose(got[:7], obs[:7])
    np.testing.assert_allclose(got[7:16], blocks[1:].mean(1), rtol=1e-6)
    np.testing.assert_allclose(got[16:], blocks[1:].max(1))
    critic = Critic(POOLED_CRITIC_FEATURES, (4,), pooled=True)
    np.testing.assert_allclose(critic.head_input(torch.from_numpy(obs)).numpy(), got, rtol=1e-6)


def test_pooled_critic_gives_one_value_per_row_at_any_n_with_the_same_weights():
    torch.manual_seed(0)
    critic = Critic(critic_dim(5, OBS_LAYOUT_V3, "pooled"), (8, 8), pooled=True)
    assert critic_dim(5, OBS_LAYOUT_V3, "pooled") == critic_dim(9, OBS_LAYOUT_V3, "pooled")
    o5, o9 = v3_obs(5), v3_obs(9)
    v5, v9 = critic(torch.from_numpy(o5)), critic(torch.from_numpy(o9))
    assert v5.shape == (o5.shape[0],) and v9.shape == (o9.shape[0],)
    assert torch.isfinite(v5).all() and torch.isfinite(v9).all()
    # the numpy pooling then the MLP: the same values
    np.testing.assert_allclose(critic.net(torch.from_numpy(pooled_critic_input(o9))).squeeze(-1).detach(),
                               v9.detach(), rtol=1e-5, atol=1e-6)
    # a set of candidates: their order does not change the value
    perm = np.random.default_rng(1).permutation(9)
    blocks = o9[:, 7:].reshape(-1, 10, 9)[:, :, perm].reshape(o9.shape[0], -1)
    shuffled = np.concatenate([o9[:, :7], blocks], axis=1)
    torch.testing.assert_close(critic(torch.from_numpy(shuffled)), v9)
    # the pooled critic reads v3 only
    with pytest.raises(ValueError, match="pooled critic"):
        critic_dim(5, "o2o-obs-v2", "pooled")
    with pytest.raises(UserError, match="pooled critic"):
        learner_settings("project", online=["critic_input=pooled"])


def test_policy_at_another_n_shares_its_weights_and_move_to_trains_them():
    sc5 = load_scenario("paper-sim", ["nodes=5", "slots=10"])
    torch.manual_seed(0)
    policy = initial_policy(5, SETTINGS, OBS_LAYOUT_V3, "node")
    assert policy.any_nodes and policy.critic_input == "pooled"
    p7 = policy.at_nodes(7)
    assert p7.nodes == 7 and p7.actor.net is policy.actor.net and p7.critic is policy.critic
    algo = OnlinePPO(sc5, sample_network(sc5, 1000), SETTINGS, policy, seed=0)
    algo.train(2, show_progress=False)
    before = {k: v.clone() for k, v in algo.actor.net.state_dict().items()}
    sc7 = load_scenario("paper-sim", ["nodes=7", "slots=10"])
    algo.move_to(sc7, sample_network(sc7, 1001))
    assert algo.policy.nodes == 7 and algo.updater.actor is algo.actor
    result = algo.train(4, show_progress=False)
    # the episodes go on in the same online(seed) range
    assert algo.episodes_done == 4 and result.episode_seeds == online_seeds(0).take(2, 2)
    assert any(not torch.equal(before[k], v) for k, v in algo.actor.net.state_dict().items())
    # an actor whose weights depend on N does not move
    v2 = initial_policy(5, learner_settings("project").online, "o2o-obs-v2", "node")
    with pytest.raises(ValueError, match="for 5 nodes only"):
        v2.at_nodes(7)


# ------------------------------------------------------------------------------ the generalist
def base(*sets):
    return load_scenario("paper-sim", ["slots=10", *sets])


def test_distribution_draws_inside_its_ranges_from_the_seed():
    dist = Distribution(base(), (4, 6), (1000, 1009))
    draws = [dist.draw(np.random.default_rng(3)) for _ in range(2)]
    assert draws[0] == draws[1]  # the same generator state, the same draw
    rng = np.random.default_rng(0)
    many = [dist.draw(rng) for _ in range(200)]
    assert {d["nodes"] for d in many} == {4, 5, 6}
    assert all(1000 <= d["network_seed"] <= 1009 for d in many)
    assert {d["task_size_kb"] for d in many} == set(np.linspace(4000, 12000, LEVELS))
    assert {round(d["arrival_prob"], 9) for d in many} == {0.6, 0.7, 0.8, 0.9, 1.0}
    assert {round(d["node_fail_rate"], 9) for d in many} == {0.1, 0.15, 0.2, 0.25, 0.3}
    # the default scales cover the figures' widest point; a wider one raises them
    assert covering_scales(dist.widest()) == FeatureScales()
    wide = Distribution(base(), (4, 6), upper_ends={"task_size_kb": (4000, 20000)})
    assert covering_scales(wide.widest()).task_bytes == 20000 * 1024


@pytest.mark.parametrize("change, message", [
    ({"nodes": (6, 4)}, "LO <= HI"), ({"network_seeds": (10, 5)}, "LO <= HI"),
    ({"network_seeds": (0, 2000)}, "kept for evaluation"),
    ({"upper_ends": {"arrival_prob": (0.9, 0.6)}}, "LO <= HI"),
    ({"upper_ends": {"arrival_prob": (0.6, 1.5)}}, "arrival_prob"),
    ({"nodes": (1, 4)}, "nodes"),
])
def test_distribution_refuses_bad_ranges(change, message):
    with pytest.raises(UserError, match=message):
        Distribution(base(), **{"nodes": (4, 6), **change}).check()


def tiny(out, seed=0, extra=()):
    return main(["train", "generalist", "--out", str(out), "--nodes", "4", "6", "--set", "slots=10",
                 "--episodes", "4", "--episodes-per-round", "2", "--seed", str(seed),
                 "--set-hparam", "hidden=[8, 8]", "--json", *extra])


def test_tiny_generalist_runs_at_two_n_fine_tunes_at_another_and_is_deterministic(tmp_path, capsys):
    out = tmp_path / "g"
    assert tiny(out) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["seconds"] > 0 and report["rounds"] == 2 and report["nodes_range"] == [4, 6]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["obs_layout"] == OBS_LAYOUT_V3 and manifest["critic_input"] == "pooled"
    assert manifest["actor_head"] == "scorer" and manifest["nodes_range"] == [4, 6]
    assert manifest["sha256"] == report["sha256"]
    rounds = manifest["training"]["rounds"]
    assert len(rounds) == 2 and all(1000 <= r["network_seed"] <= 1999 for r in rounds)
    # trained_ranges: the hull of the drawn scenarios' ranges
    for field in ("task_size_kb", "arrival_prob", "node_fail_rate"):
        assert manifest["trained_ranges"][field][1] == max(r[field] for r in rounds)
    assert manifest["trained_ranges"]["complexity"] == scenario_ranges(base())["complexity"]
    assert manifest["feature_scales"] == FeatureScales().model_dump()
    # the report says which upper ends the draws did not reach (a short run)
    maxima = {"task_size_kb": 12000, "arrival_prob": 1.0, "node_fail_rate": 0.3}
    assert report.get("upper_ends_not_reached", {}) == {
        f: [manifest["trained_ranges"][f][1], hi] for f, hi in maxima.items()
        if manifest["trained_ranges"][f][1] < hi}

    # It runs at two N, under a scenario inside what it was trained on ...
    inside = [x for f in ("task_size_kb", "arrival_prob", "node_fail_rate")
              for x in ("--set", f"{f}={manifest['trained_ranges'][f]}")]
    for n in (4, 6):
        assert main(["simulate", "--scheduler", "drl", "--model", str(out), "--set", f"nodes={n}",
                     "--set", "slots=10", *inside, "--episodes", "2", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["drl"]["tasks"] > 0
    # ... and refuses N outside its nodes_range and a scenario outside its trained ranges.
    assert main(["simulate", "--scheduler", "drl", "--model", str(out), "--set", "nodes=7",
                 "--set", "slots=10", "--episodes", "1"]) == 2
    assert "nodes_range" in capsys.readouterr().err
    assert main(["simulate", "--scheduler", "drl", "--model", str(out), "--set", "nodes=5",
                 "--set", "slots=10", "--set", "node_fail_rate=[0, 0.5]", "--episodes", "1"]) == 2
    assert "node_fail_rate" in capsys.readouterr().err

    # Fine-tuning at an N other than the stored weights' (the pooled critic reads any N).
    other = 4 if manifest["nodes"] != 4 else 6
    tuned = tmp_path / "ft"
    assert main(["train", "online", "--model", str(out), "--set", f"nodes={other}", "--set", "slots=10",
                 *inside, "--episodes", "2", "--eval-episodes", "0", "--out", str(tuned), "--json"]) == 0
    capsys.readouterr()
    ft = load_model(str(tuned), nodes=5, need_critic=True)
    assert ft.nodes == other and ft.nodes_range == (4, 6) and ft.critic_input == "pooled"
    assert Policy.load(str(tuned), nodes=5, need_critic=True)[0].nodes == 5

    # The same seed gives the same weights; another seed other weights.
    assert tiny(tmp_path / "again") == 0
    assert json.loads(capsys.readouterr().out)["sha256"] == manifest["sha256"]
    assert tiny(tmp_path / "seed1", seed=1) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] != manifest["sha256"]


def test_an_own_critic_still_fine_tunes_only_at_its_n(tmp_path, capsys):
    out = str(tmp_path / "own")
    assert main(["train", "online", "--from-scratch", "--obs-layout", "o2o-obs-v3", "--set", "nodes=5",
                 "--set", "slots=10", "--episodes", "2", "--eval-episodes", "0", "--nodes-range", "4", "6",
                 "--set-hparam", "hidden=[8, 8]", "--out", out, "--json"]) == 0
    capsys.readouterr()
    with pytest.raises(ModelError, match="critic reads the observation of 5 nodes"):
        load_model(out, nodes=6, need_critic=True)
    policy, _ = Policy.load(out, nodes=6)  # the actor alone runs there
    assert policy.nodes == 6 and policy.critic is None


@pytest.mark.parametrize("extra, message", [
    (["--nodes", "6", "4"], "--nodes 6 4: give LO <= HI"),
    (["--network-seeds", "5", "20"], "kept for evaluation"),
    (["--arrival-max", "0.9", "0.6"], "--arrival-max"),
    (["--task-size-max", "500", "4000"], "lower end 1000"),
    (["--fail-rate-max", "0.1", "nan"], "finite"),
    (["--nodes", "2", "2000"], "at most 1,024"),
    (["--set-hparam", "critic_input=own"], "critic_input must be pooled"),
    (["--set-hparam", "actor_head=plain"], "scorer"),
    (["--set", "arrival_prob=[0.8, 1.0]"], "--arrival-max"),
    (["--teacher", "spread", "--teacher-networks", "1000000"], "use fewer --teacher-networks"),
])
def test_generalist_refuses_bad_input_with_exit_2(tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    assert tiny(out, extra=extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


# ------------------------------------------------------------------ offline phase (a teacher)
def teacher_data(n, credit="decision", layout=OBS_LAYOUT_V3, seed=0):
    from o2o.logs.dataset import simulated_dataset
    from o2o.sim import make_scheduler

    sc = base(f"nodes={n}")
    return simulated_dataset(sc, sample_network(sc, 1000 + n), make_scheduler("spread"), [seed, seed + 1],
                             reward_credit=credit, obs_layout=layout)


OFFLINE = learner_settings("project", offline=["critic_input=pooled", "hidden=[8, 8]"], obs_layout=OBS_LAYOUT_V3).offline


def test_offline_across_networks_trains_one_scorer_for_every_n_and_is_deterministic():
    data = [teacher_data(4), teacher_data(6)]
    policy = train_offline_across(data, OFFLINE, seed=0, steps=20)
    assert policy.any_nodes and policy.critic_input == "pooled" and policy.reward_credit == "decision"
    again = train_offline_across(data, OFFLINE, seed=0, steps=20)
    other = train_offline_across(data, OFFLINE, seed=1, steps=20)
    flat = [torch.cat([p.detach().ravel() for p in pol.actor.parameters()]) for pol in (policy, again, other)]
    assert torch.equal(flat[0], flat[1]) and not torch.equal(flat[0], flat[2])
    torch.manual_seed(0)  # the offline steps moved the weights away from a fresh start
    fresh = initial_policy(4, SETTINGS, OBS_LAYOUT_V3, "decision")
    assert not torch.equal(flat[0], torch.cat([p.detach().ravel() for p in fresh.actor.parameters()]))
    # the same weights score candidates at both N (the gather is the only thing that changes)
    for n, d in ((4, data[0]), (6, data[1])):
        logits = policy.at_nodes(n).actor.logits(torch.from_numpy(d["observations"][:3]))
        assert logits.shape == (3, n + 1) and torch.isfinite(logits[:, :n]).all()


def teacher_kl(teacher, student, data):
    """Mean KL(teacher || student) over the task rows of the data sets, each at its N."""
    from o2o.learn.offline import masked_logits

    kls = []
    for d in data:
        n, rows = d["action_masks"].shape[1] - 1, ~d["action_masks"][:, -1]
        obs, mask = torch.from_numpy(d["observations"][rows]), torch.from_numpy(d["action_masks"][rows])
        with torch.no_grad():
            log_t, log_s = (torch.log_softmax(masked_logits(a.at_nodes(n).actor.logits(obs), mask), -1)
                            for a in (teacher, student))
        p_t = log_t.exp()
        kls.append((p_t * torch.where(p_t > 0, log_t - log_s, torch.zeros_like(log_t))).sum(-1).mean())
    return float(torch.stack(kls).mean())


def test_offline_across_with_a_teacher_learns_the_teachers_probabilities():
    data = [teacher_data(4), teacher_data(6)]
    fast = OFFLINE.model_copy(update={"lr": 1e-2})
    teacher = train_offline_across(data, fast, seed=7, steps=60)
    distilled = train_offline_across(data, fast, seed=0, steps=150, teachers=[teacher.actor, teacher.actor])
    plain = train_offline_across(data, fast, seed=0, steps=150)
    start = train_offline_across(data, fast, seed=0, steps=0)
    # the teacher's probabilities, not the logged actions, are what it moved towards
    assert teacher_kl(teacher, distilled, data) < 0.5 * teacher_kl(teacher, start, data)
    assert teacher_kl(teacher, distilled, data) < 0.1 * teacher_kl(teacher, plain, data)
    # a teacher on one data set only: the other keeps the algorithm's loss
    half = train_offline_across(data, fast, seed=0, steps=150, teachers=[None, teacher.actor])
    flat = [torch.cat([p.detach().ravel() for p in pol.actor.parameters()]) for pol in (distilled, plain, half)]
    assert not torch.equal(flat[2], flat[0]) and not torch.equal(flat[2], flat[1])
    with pytest.raises(UserError, match="1 teachers for 2 data sets"):
        train_offline_across(data, OFFLINE, seed=0, steps=2, teachers=[teacher.actor])
    other = copy.deepcopy(teacher.actor)
    other.obs_layout = "o2o-obs-v2"
    with pytest.raises(UserError, match="a teacher reads what the generalist reads"):
        train_offline_across(data, OFFLINE, seed=0, steps=2, teachers=[None, other])


@pytest.mark.parametrize("change, message", [
    (lambda d: [teacher_data(4, layout="o2o-obs-v2")], "reads o2o-obs-v3"),
    (lambda d: [d, teacher_data(6, credit="node")], "different reward credits"),
    (lambda d: [], "at least one data set"),
])
def test_offline_across_networks_refuses_what_it_cannot_train(change, message):
    with pytest.raises(UserError, match=message):
        train_offline_across(change(teacher_data(4)), OFFLINE, seed=0, steps=2)
    with pytest.raises(UserError, match="algorithm=awr"):
        train_offline_across([teacher_data(4)], OFFLINE.model_copy(update={"algorithm": "sac-cql"}), 0, 2)


def test_teacher_datasets_tune_and_log_the_rule_on_drawn_networks(monkeypatch):
    calls = []

    def tune(scenario, network, name, *, network_seed, episodes, grid):  # the grid search, cut short
        calls.append((scenario.nodes, network_seed, episodes, grid))
        return {"params": {"local_margin": 0.8, "peer_margin": 0.8}}

    monkeypatch.setattr("o2o.experiments.teacher.tune_rule", tune)
    dist = Distribution(base(), (4, 6), (1000, 1009))
    plan = TeacherPlan("spread", networks=3, episodes=2, tune_episodes=4, steps=1)
    datasets, records, ranges = teacher_datasets(dist, plan, seed=0, reward_credit="node", show_progress=False)
    assert len(datasets) == len(records) == 3 and [c[2:] for c in calls] == [(4, None)] * 3   # o2o tune's grid
    for d, r, c in zip(datasets, records, calls):
        assert d["action_masks"].shape[1] == r["nodes"] + 1 and (r["nodes"], r["network_seed"]) == c[:2]
        assert r["params"] == {"local_margin": 0.8, "peer_margin": 0.8} and r["rows"] == d["actions"].shape[0]
        assert str(d["reward_credit"]) == "node"
    assert ranges["task_size_kb"][1] == max(r["task_size_kb"] for r in records)
    again = teacher_datasets(dist, plan, seed=0, reward_credit="node", show_progress=False)
    assert all(np.array_equal(a["observations"], b["observations"]) for a, b in zip(datasets, again[0]))
    with pytest.raises(UserError, match="--teacher ratc"):
        TeacherPlan("ratc").check()
    # --teacher-grid wide: slack-reliable tuned on the wide grid; no other rule has one
    calls.clear()
    teacher_datasets(dist, TeacherPlan("slack-reliable", networks=2, episodes=1, tune_episodes=3, steps=1, grid="wide"),
                     seed=0, reward_credit="node", show_progress=False)
    assert [c[2:] for c in calls] == [(3, WIDE_GRIDS["slack-reliable"])] * 2
    with pytest.raises(UserError, match="only slack-reliable has a wide grid"):
        teacher_datasets(dist, TeacherPlan("spread", grid="wide"), seed=0, reward_credit="node", show_progress=False)
    with pytest.raises(UserError, match="--teacher-grid narrow"):
        TeacherPlan(grid="narrow").check()


def test_tiny_generalist_with_a_teacher_starts_from_the_offline_policy(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("o2o.experiments.teacher.tune_rule",
                        lambda *a, **k: {"params": {"local_margin": 0.8, "peer_margin": 0.8}})
    out = tmp_path / "t"
    assert tiny(out, extra=["--teacher", "spread", "--teacher-networks", "2", "--teacher-episodes", "2",
                            "--offline-steps", "5", "--reward-credit", "decision"]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    teacher = manifest["training"]["teacher"]
    assert teacher["rule"] == "spread" and len(teacher["networks"]) == 2 and teacher["offline_steps"] == 5
    assert manifest["reward_credit"] == "decision" and manifest["hidden"] == [8, 8]
    for field in ("task_size_kb", "arrival_prob", "node_fail_rate"):  # the hull of both phases
        assert manifest["trained_ranges"][field][1] == max(
            r[field] for r in teacher["networks"] + manifest["training"]["rounds"])
    assert teacher["tune_grid"] == "shipped"
    assert tiny(tmp_path / "bad", extra=["--teacher", "ratc"]) == 2
    assert "--teacher ratc" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    for extra, message in ((["--teacher-grid", "wide"], "runs only with --teacher"),
                           (["--teacher", "spread", "--teacher-grid", "wide"], "only slack-reliable")):
        assert tiny(tmp_path / "bad", extra=extra) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_set_offline_sets_the_teachers_offline_phase_and_needs_a_teacher(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("o2o.experiments.teacher.tune_rule",
                        lambda *a, **k: {"params": {"local_margin": 0.8, "peer_margin": 0.8}})
    teacher = ["--teacher", "spread", "--teacher-networks", "2", "--teacher-episodes", "2", "--offline-steps", "5"]
    prior = "rule_prior=[1.0, 0.8, 4.0, 2.0, 10.0, 2.0]"
    out = tmp_path / "p"
    assert tiny(out, extra=[*teacher, "--set-offline", prior, "--set-offline", "awr_temperature=0.5"]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    offline = manifest["training"]["teacher"]["offline_settings"]
    assert offline["awr_temperature"] == 0.5 and offline["critic_input"] == "pooled"
    # The offline actor's prior is the model's: the online rounds go on from that actor.
    assert manifest["rule_prior"] == {"local_margin": 1.0, "peer_margin": 0.8, "rel_power": 4.0,
                                      "slack_power": 2.0, "cap": 10.0, "gap": 2.0}
    assert tiny(tmp_path / "none", extra=["--set-offline", "awr_temperature=0.5"]) == 2
    assert "only with --teacher" in capsys.readouterr().err and not (tmp_path / "none").exists()
    assert tiny(tmp_path / "typo", extra=[*teacher, "--set-offline", "awr_temprature=0.5"]) == 2
    assert "awr_temprature" in capsys.readouterr().err and not (tmp_path / "typo").exists()


def test_miss_points_script_pairs_the_generalist_with_a_runs_rule_and_refuses_a_missing_run(
        tmp_path, capsys, monkeypatch):
    # scripts/generalist_miss_points.py: the generalist and a fine-tuned model on a run's
    # held-out episodes, paired per episode with the run's rule and O2O-DRL; --score validation
    # simulates the rule at the run's tuned values instead.
    from pathlib import Path

    from o2o.schedulers.drl import DRLRule
    from o2o.sim import make_scheduler
    from o2o.sim.rollout import simulate

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "scripts"))
    import generalist_miss_points as gm

    general = tmp_path / "g"
    assert tiny(general) == 0
    capsys.readouterr()
    ranges = json.loads((general / "manifest.json").read_text())["trained_ranges"]
    sc = load_scenario("paper-sim", ["nodes=5", "slots=10", *[f"{f}={ranges[f]}" for f in
                                                               ("task_size_kb", "arrival_prob", "node_fail_rate")]])
    net = sample_network(sc, 3)
    seeds = [11, 12, 13, 14]
    params = {"local_margin": 0.7, "peer_margin": 0.9, "rel_power": 1.0, "slack_power": 1.0}
    rule = simulate(sc, net, seeds, make_scheduler("slack-reliable", params))["success_rate"]
    run = tmp_path / "results.json"
    run.write_text(json.dumps({"scenario": sc.model_dump(mode="json"), "network_seed": 3,
                               "evaluation_seeds": seeds,
                               "slack-reliable": {"per_episode": rule.tolist()},
                               "o2o-drl": {"per_episode": (rule - 0.01).tolist()},
                               "tuned": {"slack-reliable": {"params": params}}}))
    out = tmp_path / "rows.json"
    assert gm.main([f"nodes=5={run},{general}", "--model", str(general), "--json", str(out), "--markdown"]) == 0
    assert "| 3: nodes=5 |" in capsys.readouterr().out
    row = json.loads(out.read_text())["rows"][0]
    g = simulate(sc, net, seeds, DRLRule.from_model(str(general), sc, net))["success_rate"]
    assert row["episodes"] == 4 and row["generalist"] == pytest.approx(g.mean())
    assert row["fine-tuned"] == row["generalist"]   # the same model given as both
    assert row["generalist_minus_slack-reliable"][0] == pytest.approx((g - rule).mean())
    assert row["generalist_minus_o2o-drl"][0] == pytest.approx((g - rule).mean() + 0.01)
    assert row["o2o-drl_minus_rule"][0] == pytest.approx(-0.01)
    assert gm.main([f"nodes=5={run},{general}", "--model", str(general), "--score", "validation",
                    "--json", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["score"] == "validation" and row["episodes"] == 20 and "o2o-drl" not in row
    with pytest.raises(SystemExit) as refused:
        gm.main([f"nodes=5={tmp_path / 'none'},{general}"])
    assert refused.value.code == 2 and "not found" in capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere"   # a model fine-tuned on another network
    elsewhere.mkdir()
    manifest = json.loads((general / "manifest.json").read_text())
    manifest["training"]["network_seed"] = 4
    (elsewhere / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit) as refused:
        gm.main([f"nodes=5={run},{elsewhere}"])
    assert refused.value.code == 2 and "network seed 4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        gm.main([f"{run},{general}"])
    assert refused.value.code == 2 and "POINT=RUN,FINETUNED_DIR" in capsys.readouterr().err


def test_validation_script_keeps_the_cases_asked_for_and_refuses_with_exit_2(tmp_path, capsys, monkeypatch):
    # scripts/generalist_validation.py: --nodes / --task-size-max keep those cases; filters that
    # leave none, and a model that cannot run a case (here, N outside its range), exit 2.
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "scripts"))
    import generalist_validation as gv

    assert [c[0] for c in gv.parse(["m", "--nodes", "50"]).cases] == [50]
    assert gv.parse(["m"]).temperature == [1.0] and gv.parse(["m", "--temperature", "0.5", "2"]).temperature == [0.5, 2.0]
    large = gv.parse(["m", "--large-tasks", "--task-size-max", "10000"]).cases
    assert [gv.task_size_max(c) for c in large] == [10000.0]
    assert gv.task_size_max(gv.DEFAULT_CASES[0]) is None
    # --sweep: N = 20 at the distribution's levels, one field at a time, none of paper-sim's own
    sweep = gv.parse(["m", "--sweep"]).cases
    assert {n for n, _ in sweep} == {20} and len(sweep) == 10
    assert {o[0].split("=")[0] for _, o in sweep} == {"task_size_kb", "arrival_prob", "node_fail_rate"}
    assert not {"arrival_prob=[0, 1.0]", "node_fail_rate=[0, 0.1]"} & {o[0] for _, o in sweep}
    assert [gv.task_size_max(c) for c in gv.parse(["m", "--sweep", "--task-size-max", "4000"]).cases] == [4000.0]
    assert gv.parse(["m", "--sweep", "--case", "arrival_prob=[0, 0.6]"]).cases == [(20, ["arrival_prob=[0, 0.6]"])]
    for argv, message in ((["m", "--nodes", "30"], "no case is left"), ([], "give a MODEL_DIR"),
                          (["m", "--task-size-max", "10000"], "no case is left"),
                          (["m", "--sweep", "--large-tasks"], "not allowed with"),
                          (["m", "--sweep", "--case", "arrival_prob=[0,0.6]"], "'arrival_prob=[0, 0.6]'"),
                          (["m", "--temperature", "0"], "positive finite"),
                          (["m", "--temperature", "1", "nan"], "positive finite")):
        with pytest.raises(SystemExit) as refused:
            gv.parse(argv)
        assert refused.value.code == 2 and message in capsys.readouterr().err
    general = tmp_path / "g"
    assert tiny(general) == 0   # trained at N = 4 and 6
    capsys.readouterr()
    assert gv.main([str(general), "--nodes", "50"]) == 2
    err = capsys.readouterr().err
    assert "at N = 50" in err and str(general) in err
    # --temperature T: the same model's logits divided by T, nothing else changed
    scenario = load_scenario("paper-sim", ["nodes=4", "slots=10", "task_size_kb=[1000, 6000]",
                                           "arrival_prob=[0, 0.6]", "node_fail_rate=[0, 0.1]"])
    network = sample_network(scenario, 500)
    plain, soft = (gv.model_at(str(general), t)(scenario, network, 500) for t in (1.0, 2.0))
    obs = np.random.default_rng(0).random((3, plain.actor.obs_dim)).astype(np.float32)
    np.testing.assert_allclose(soft.actor.logits(obs), plain.actor.logits(obs) / 2.0, rtol=1e-6)


def test_distill_script_refuses_bad_seeds_with_exit_2(capsys, monkeypatch):
    # scripts/generalist_distill.py: a point model trains on a training network (seed >= 1000),
    # --seed is a training seed >= 0, and --set names the learner's settings; each refused
    # before anything is drawn.
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "scripts"))
    import generalist_distill as gd

    for argv, message in ((["point", "out", "999"], "NETWORK_SEED >= 1000"),
                          (["student", "out", "--point", "m", "nodes=20", "--seed", "-1"], "got -1"),
                          (["online", "start", "out", "8", "--seed", "-2"], "got -2"),
                          (["student", "out", "--point", "m", "nodes=20", "--set", "nosuch=1"],
                           "unknown hyper-parameter 'nosuch'"),
                          (["student", "out", "--point", "m", "nodes=20", "--set", "hidden=wide"],
                           "--set: invalid hyper-parameter: hidden"),
                          (["online", "start", "out", "8", "kl_coef=much"], "HPARAM=VALUE: invalid hyper-parameter"),
                          (["student", "out", "--point", "m", "nodes=20", "--point-networks", "17"], "1 to 16"),
                          (["student", "out", "--point", "m", "nodes=20"], "no model at m")):
        with pytest.raises(SystemExit) as refused:
            gd.main(argv)
        assert refused.value.code == 2 and message in capsys.readouterr().err


def test_zero_shot_summary_counts_the_points_whose_ci_lies_below_or_above_zero(monkeypatch):
    # scripts/generalist_zero_shot.py's last line: the mean, and the points whose paired CI
    # against the tuned rule lies wholly below / above 0, with the worst difference.
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "scripts"))
    import generalist_zero_shot as zs

    rows = [{"point": p, "generalist": g, "slack-reliable": {"generalist_minus": ci}}
            for p, g, ci in (("a", 0.90, [-0.003, -0.005, -0.001]), ("b", 0.92, [0.002, 0.001, 0.003]),
                             ("c", 0.94, [0.001, -0.001, 0.003]), ("d", 0.86, [-0.002, -0.004, 0.0]))]
    assert zs.summary(rows) == ("over the 4 points: generalist mean 0.9050; against slack-reliable: "
                                "CI below 0 at 1, above 0 at 1, worst -0.0030 (a)")
