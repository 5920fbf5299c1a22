"""Options of Algorithm 2 for fine-tuning a model trained elsewhere (the generalist on a new
network, issue 20 goal 3): separate actor and critic learning rates, a critic warm-up, a KL
penalty to the starting policy, and a reward credit other than the model's once the critic is
refit. Their defaults leave the update as it was (``test_fast_paths`` checks that update
against the plain one)."""

import copy
import json

import numpy as np
import pytest
import torch

from o2o.cli.main import main
from o2o.core.decpomdp import OBS_LAYOUT_V3, obs_dim
from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.learn.nets import Actor, Critic
from o2o.learn.online import OnlinePPO, PPOUpdate, initial_policy
from o2o.learn.settings import OnlineSettings, learner_settings
from tests.helpers import random_ppo_batch

N = 4


def batch(seed=5, T=6, B=3):
    return random_ppo_batch(N, obs_dim(N), seed, T, B)


def nets(s, seed=0):
    torch.manual_seed(seed)
    d = obs_dim(N)
    return Actor(d, N + 1, s.hidden), Critic(d, s.hidden)


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


BASE = dict(hidden=(8, 8), minibatch_size=16, epochs=2)


def test_defaults_are_off_and_naming_lr_for_both_is_the_same_update():
    s = OnlineSettings()
    assert (s.actor_lr, s.critic_lr, s.critic_warmup, s.kl_coef) == (None, None, 0, 0.0)
    project = learner_settings("project").online
    assert (project.actor_lr, project.critic_lr, project.critic_warmup, project.kl_coef) == (None, None, 0, 0.0)
    runs = []
    for extra in ({}, {"actor_lr": 3e-4, "critic_lr": 3e-4}):
        s = OnlineSettings(**BASE, **extra)
        actor, critic = nets(s)
        upd = PPOUpdate(s, actor, critic, np.random.default_rng(9))
        stats = [upd.update(batch(k)) for k in range(2)]
        assert upd.reference is None and "kl_start" not in stats[0] and "critic_warmup" not in stats[0]
        runs.append((params(actor), params(critic), stats))
    assert same(runs[0][0], runs[1][0]) and same(runs[0][1], runs[1][1]) and runs[0][2] == runs[1][2]


def test_critic_warmup_freezes_the_actor_for_m_updates_and_fits_the_critic():
    s = OnlineSettings(**BASE, critic_warmup=2)
    actor, critic = nets(s)
    a0, c0 = params(actor), params(critic)
    upd = PPOUpdate(s, actor, critic, np.random.default_rng(9))
    for k in range(2):
        stats = upd.update(batch(k))
        assert stats["critic_warmup"] == 1.0 and set(stats) == {"v_loss", "critic_warmup"}
        assert same(params(actor), a0)             # the actor's weights ...
        assert not upd.actor_opt.state             # ... and its Adam moments, untouched
        assert not same(params(critic), c0)
        c0 = params(critic)
    stats = upd.update(batch(2))                   # update M + 1 moves the actor
    assert "critic_warmup" not in stats and "ppo_objective" in stats
    assert not same(params(actor), a0) and not same(params(critic), c0)
    # During the warm-up the critic gets the very steps it gets without it (it never reads the
    # actor), from the same minibatches.
    s0 = OnlineSettings(**BASE)
    actor2, critic2 = nets(s0)
    plain = PPOUpdate(s0, actor2, critic2, np.random.default_rng(9))
    actor3, critic3 = nets(s)
    warm = PPOUpdate(s, actor3, critic3, np.random.default_rng(9))
    for k in range(2):
        plain.update(batch(k))
        warm.update(batch(k))
    assert same(params(critic2), params(critic3))


def test_actor_lr_changes_the_actor_only_and_critic_lr_the_critic_only():
    ref_actor, ref_critic = None, None
    out = {}
    for name, extra in (("default", {}), ("actor", {"actor_lr": 1e-5}), ("critic", {"critic_lr": 1e-5})):
        s = OnlineSettings(**BASE, **extra)
        actor, critic = nets(s)
        PPOUpdate(s, actor, critic, np.random.default_rng(9)).update(batch())
        out[name] = (params(actor), params(critic))
    ref_actor, ref_critic = out["default"]
    assert same(out["actor"][1], ref_critic) and not same(out["actor"][0], ref_actor)
    assert same(out["critic"][0], ref_actor) and not same(out["critic"][1], ref_critic)


def kl_to(reference, actor, buf):
    obs = torch.from_numpy(buf["obs"].reshape(-1, buf["obs"].shape[-1]))
    mask = torch.from_numpy(buf["mask"].reshape(-1, N + 1))
    rows = ~mask[:, -1]
    with torch.no_grad():
        ref, new = reference.policy(obs[rows], mask[rows])[0], actor.policy(obs[rows], mask[rows])[0]
    return float((ref.exp() * (ref - new)).sum(-1).mean())


def test_kl_penalty_holds_the_actor_near_where_it_started():
    kls = {}
    for coef in (0.0, 10.0):
        s = OnlineSettings(**BASE, kl_coef=coef, lr=1e-2)
        actor, critic = nets(s)
        start = copy.deepcopy(actor)
        upd = PPOUpdate(s, actor, critic, np.random.default_rng(9))
        for k in range(3):
            stats = upd.update(batch(k))
        assert ("kl_start" in stats) == (coef > 0)
        if coef > 0:  # the reference is the starting actor, frozen
            assert same(params(upd.reference), params(start))
            assert not any(p.requires_grad for p in upd.reference.parameters())
        kls[coef] = kl_to(start, actor, batch(7))
    assert 0 <= kls[10.0] < 0.5 * kls[0.0]


def test_kl_reference_follows_the_actor_to_another_n():
    s = learner_settings("project", online=["critic_input=pooled", "hidden=[8, 8]", "kl_coef=1.0"],
                         obs_layout=OBS_LAYOUT_V3).online
    sc5 = load_scenario("paper-sim", ["nodes=5", "slots=10"])
    torch.manual_seed(0)
    policy = initial_policy(5, s, OBS_LAYOUT_V3, "node")
    algo = OnlinePPO(sc5, sample_network(sc5, 1000), s, policy, seed=0)
    start = params(algo.updater.reference)
    algo.train(2, show_progress=False)
    sc7 = load_scenario("paper-sim", ["nodes=7", "slots=10"])
    algo.move_to(sc7, sample_network(sc7, 1001))
    ref = algo.updater.reference
    assert ref.n_actions == 8 and same(params(ref), start)
    assert algo.train(4, show_progress=False).history[-1]["kl_start"] >= 0


def pooled_start():
    """A 5-node paper-sim network, pooled-critic v3 settings and a fresh node-credit policy."""
    sc = load_scenario("paper-sim", ["nodes=5", "slots=10"])
    s = learner_settings("project", online=["critic_input=pooled", "hidden=[8, 8]"],
                         obs_layout=OBS_LAYOUT_V3).online
    torch.manual_seed(0)
    return sc, sample_network(sc, 1000), s, initial_policy(5, s, OBS_LAYOUT_V3, "node")


def test_another_reward_credit_only_with_a_critic_warmup():
    sc, net, s, policy = pooled_start()
    with pytest.raises(UserError, match="critic_warmup"):
        OnlinePPO(sc, net, s, policy, seed=0, reward_credit="decision")
    warm = s.model_copy(update={"critic_warmup": 1})
    algo = OnlinePPO(sc, net, warm, policy, seed=0, reward_credit="decision")
    assert algo.reward_credit == "decision" and algo.env.reward_credit == "decision"
    result = algo.train(4, show_progress=False)
    assert result.policy.reward_credit == "decision"
    with pytest.raises(UserError, match="reward_norm=batch"):
        OnlinePPO(sc, net, warm.model_copy(update={"reward_norm": "fixed"}), policy, seed=0,
                  reward_credit="decision")


def test_train_online_cli_takes_the_options_and_refuses_bad_values(tmp_path, capsys):
    base = ["--set", "nodes=5", "--set", "slots=10", "--eval-episodes", "0", "--set-hparam", "hidden=[8, 8]"]
    model = str(tmp_path / "m")
    assert main(["train", "online", "--from-scratch", "--obs-layout", "o2o-obs-v3", "--episodes", "2",
                 "--set-hparam", "critic_input=pooled", "--out", model, "--json", *base]) == 0
    capsys.readouterr()
    out = str(tmp_path / "ft")
    assert main(["train", "online", "--model", model, "--episodes", "4", "--out", out, "--json",
                 "--set-hparam", "episodes_per_batch=2", "--set-hparam", "critic_warmup=1",
                 "--set-hparam", "actor_lr=1e-4", "--set-hparam", "kl_coef=0.5",
                 "--reward-credit", "decision", *base]) == 0
    capsys.readouterr()
    manifest = json.loads((tmp_path / "ft" / "manifest.json").read_text())
    assert manifest["reward_credit"] == "decision"
    assert manifest["training"]["settings"]["critic_warmup"] == 1
    assert manifest["training"]["settings"]["actor_lr"] == 1e-4
    for bad, message in ((["--set-hparam", "critic_warmup=-1"], "critic_warmup"),
                         (["--set-hparam", "actor_lr=0"], "actor_lr"),
                         (["--set-hparam", "kl_coef=-0.1"], "kl_coef"),
                         (["--set-hparam", "critic_warmup=abc"], "critic_warmup"),
                         (["--reward-credit", "decision"], "critic_warmup=M")):
        bad_out = tmp_path / "bad"
        assert main(["train", "online", "--model", model, "--episodes", "2", "--out", str(bad_out),
                     *bad, *base]) == 2
        err = capsys.readouterr().err
        assert message in err, err
        assert not bad_out.exists()


def test_fresh_critic_replaces_the_models_critic_after_a_warmup(tmp_path):
    sc, net, s, policy = pooled_start()
    actor0 = params(policy.actor)
    with pytest.raises(UserError, match="critic_warmup"):
        OnlinePPO(sc, net, s.model_copy(update={"fresh_critic": True}), policy, seed=0)
    fresh = s.model_copy(update={"fresh_critic": True, "critic_warmup": 1, "critic_input": "own",
                                 "hidden": (16,), "episodes_per_batch": 2})
    algo = OnlinePPO(sc, net, fresh, policy, seed=0)
    assert algo.critic is not policy.critic and not algo.critic.pooled
    assert algo.policy.critic_input == "own" and algo.critic.hidden == policy.actor.hidden == (8, 8)
    assert algo.actor.net is policy.actor.net         # the model's actor, fine-tuned in place
    algo.train(2, show_progress=False)                 # the warm-up update: the actor as it was
    assert same(params(policy.actor), actor0)
    result = algo.train(4, show_progress=False)
    assert not same(params(policy.actor), actor0)
    result.policy.save(str(tmp_path / "m"), nodes_range=(5, 5))   # a model file holds it
    # the same seed builds the same new critic
    again = OnlinePPO(sc, net, fresh, initial_policy(5, s, OBS_LAYOUT_V3, "node"), seed=0)
    torch.manual_seed(0)
    assert same(params(again.critic), params(OnlinePPO(sc, net, fresh, policy, seed=0).critic))
    # a critic the layout cannot have is refused with the option's name
    with pytest.raises(UserError, match="critic_input=central"):
        OnlinePPO(sc, net, fresh.model_copy(update={"critic_input": "central"}), policy, seed=0)


def test_train_online_from_a_generalist_uses_its_finetune_defaults_unless_plain(tmp_path, capsys):
    from o2o.learn.settings import GENERALIST_FINETUNE
    from tests.learn.test_generalist import tiny

    general = tmp_path / "g"
    assert tiny(general) == 0
    capsys.readouterr()
    n = json.loads((general / "manifest.json").read_text())["nodes"]
    ranges = json.loads((general / "manifest.json").read_text())["trained_ranges"]
    base = ["--model", str(general), "--set", f"nodes={n}", "--set", "slots=10", "--episodes", "2",
            "--eval-episodes", "0", "--json",
            *[x for f in ("task_size_kb", "arrival_prob", "node_fail_rate") for x in ("--set", f"{f}={ranges[f]}")]]
    manifests = {}
    for name, extra in (("defaults", []), ("plain", ["--plain"]), ("override", ["--set-hparam", "lr=0.0002"])):
        out = tmp_path / name
        assert main(["train", "online", "--out", str(out), *base, *extra]) == 0
        capsys.readouterr()
        manifests[name] = json.loads((out / "manifest.json").read_text())
    d = manifests["defaults"]
    assert d["reward_credit"] == GENERALIST_FINETUNE["reward_credit"] == "counterfactual"
    assert d["training"]["settings"]["critic_warmup"] == 2 and d["training"]["settings"]["lr"] == 1e-3
    assert d["training"]["generalist_finetune_defaults"]["reward_credit"] == "counterfactual"
    p = manifests["plain"]
    assert p["reward_credit"] == "node" and "generalist_finetune_defaults" not in p["training"]
    assert p["training"]["settings"] == learner_settings("project").online.model_dump(mode="json")
    o = manifests["override"]   # the command's own overrides win
    assert o["training"]["settings"]["lr"] == 2e-4 and o["training"]["settings"]["critic_warmup"] == 2
