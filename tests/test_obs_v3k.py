"""Observation o2o-obs-v3-k<k>: RATC's probe budget for the learner (issue 19, goal 2; paper
IV-B2, V-B). A node probes exactly k peers, drawn from its scheduler uniform; the simulator
(batched), the per-node path of a testbed node and the log rebuild build the same observation
and mask; the k-probe rule probes the same k."""

import asyncio

import numpy as np
import pytest
import torch

from o2o.cli.main import main
from o2o.core.decpomdp import (
    OBS_LAYOUT_V2,
    OBS_LAYOUT_V3,
    OBS_LAYOUT_VERSION,
    PROBE_SET_UNIFORM,
    V3_BLOCKS,
    V3_NODE_FEATURES,
    Observer,
    ProbeBudgetError,
    is_known_layout,
    is_probed,
    kprobe_layout,
    layout_probes,
    obs_dim,
    probe_set,
)
from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.learn.evaluate import as_numpy_actor
from o2o.learn.nets import Actor, Critic, policy_arrays
from o2o.models import load_model, save_model
from o2o.schedulers import make_rule
from o2o.schedulers.drl import DRLRule
from o2o.sim.env import OffloadVecEnv
from o2o.sim.rollout import rule_actions, simulate
from o2o.sim.views import node_views, probe_answers
from tests.helpers import per_node_matches_env

SC = load_scenario("paper-sim", ["nodes=5", "slots=12"])
NET = sample_network(SC, 3)
K2 = kprobe_layout(2)


def drl_rule(layout=K2, head="scorer", seed=0):
    torch.manual_seed(seed)
    actor = Actor(obs_dim(5, layout), 6, (16, 16), head=head, obs_layout=layout)
    return actor, DRLRule(as_numpy_actor(actor), Observer(SC, NET, layout))


def test_layout_names_and_sizes():
    assert kprobe_layout(2) == "o2o-obs-v3-k2" and layout_probes("o2o-obs-v3-k2") == 2
    assert layout_probes(OBS_LAYOUT_V3) is None and layout_probes("o2o-obs-v3-k0") is None
    assert obs_dim(5, K2) == 7 + 11 * 5
    for bad in (5, 9):  # k must lie in 1..N-1 = 1..4
        with pytest.raises(ProbeBudgetError, match="1 to N - 1 = 4"):
            Observer(SC, NET, kprobe_layout(bad))
    with pytest.raises(ProbeBudgetError, match=">= 1"):
        kprobe_layout(0)
    with pytest.raises(ValueError, match="k probes per decision"):
        Observer(SC, NET, "o2o-obs-v3-k0")


def test_probe_set_is_k_peers_never_itself_and_uniform():
    rng = np.random.default_rng(0)
    u, node = rng.random(4000), rng.integers(0, 5, 4000)
    for k in (1, 2, 4):
        s = probe_set(u, node, 5, k)
        assert (s.sum(axis=1) == k).all() and not s[np.arange(4000), node].any()
    share = probe_set(u, np.zeros(4000, dtype=int), 5, 1).mean(axis=0)[1:]
    assert np.abs(share - 0.25).max() < 0.03
    np.testing.assert_array_equal(probe_set(u, node, 5, 2), probe_set(u.copy(), node.copy(), 5, 2))


@pytest.mark.parametrize("head", ["plain", "scorer", "set-scorer"])
def test_simulator_and_per_node_observations_are_equal_and_masks_allow_only_probed(head):
    actor, drl = drl_rule(head=head)
    view, obs, mask, b, i = per_node_matches_env(SC, NET, drl, K2)
    # The probe targets are itself and exactly k = 2 peers; only those may be chosen.
    targets = drl.probe_targets(view)
    assert (targets.sum(axis=1) == 3).all() and targets[np.arange(b.size), i].all()
    assert not (mask[:, :5] & ~targets).any() and mask[np.arange(b.size), i].all()
    blocks = obs[:, V3_NODE_FEATURES:].reshape(b.size, V3_BLOCKS + 1, 5)
    np.testing.assert_array_equal(blocks[:, V3_BLOCKS], targets)        # the probed indicator
    assert (blocks[:, 2:9][~np.broadcast_to(targets[:, None], blocks[:, 2:9].shape)] == 0).all()
    with torch.no_grad():
        want = actor.probs(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(drl.actor.probs(obs, mask), want, atol=1e-5)


def test_an_unprobed_peer_reads_the_same_whatever_its_state():
    # Nothing of an unprobed peer's answers reaches the observation (a testbed node never asks).
    _, drl = drl_rule()
    env = OffloadVecEnv(SC, NET, obs_layout=K2)
    env.reset([3])
    e = env.engine
    state = e.node_state()
    b, i = np.nonzero(e.ep.has_task[:, e.t, :])
    view = node_views(e, state, b, i, drl.reads)
    answers = probe_answers(e, state, b)
    unknown = ~drl.probe_targets(view)
    garbled = type(answers)(capacity_hz=answers.capacity_hz, node_fail_rate=answers.node_fail_rate,
                            exec_backlog_s=np.where(unknown, np.nan, answers.exec_backlog_s),
                            overloaded=np.where(unknown, True, answers.overloaded))
    for a, c in zip(drl.observe(view, answers), drl.observe(view, garbled)):
        np.testing.assert_array_equal(a, c)


def test_rebuilt_transitions_equal_the_environment():
    from o2o.logs.records import episode_logs_from_rollout
    from o2o.logs.transitions import rebuild_transitions

    seeds = [4, 5]
    rule = make_rule("slack-reliable-k")
    logs = episode_logs_from_rollout(SC, NET, sample_episodes(SC, NET, seeds), rule)
    # A testbed log knows only the backlogs of the peers it probed: NaN elsewhere.
    for log in logs:
        u = sample_episodes(SC, NET, [log.episode_seed]).sched_u[0]
        node = np.tile(np.arange(5), SC.slots)
        known = probe_set(u.reshape(-1, 4)[:, PROBE_SET_UNIFORM], node, 5, 2).reshape(SC.slots, 5, 5)
        known |= np.eye(5, dtype=bool)[None]
        log.peer_backlog_s = np.where(known, log.peer_backlog_s, np.nan)
    from o2o.testbed.analysis import logged_probes_per_task

    assert logged_probes_per_task(logs) == 2.0      # what a testbed run reports
    tr = rebuild_transitions(SC, NET, logs, "node", K2)
    env = OffloadVecEnv(SC, NET, "node", K2)
    obs, mask = env.reset(seeds)
    got, masks = [], []
    while not env.engine.done:
        got.append(obs)
        masks.append(mask)
        obs, mask, *_ = env.step(rule_actions(env.engine, rule)[0])
    np.testing.assert_array_equal(tr.observations, np.stack(got, axis=1))
    np.testing.assert_array_equal(tr.action_masks, np.stack(masks, axis=1))


def test_exactly_k_probes_per_decision_for_the_learner_and_the_rule():
    seeds = [0, 1, 2]
    for k in (1, 2, 4):
        layout = kprobe_layout(k)
        torch.manual_seed(0)
        actor = Actor(obs_dim(5, layout), 6, (8,), head="scorer", obs_layout=layout)
        drl = DRLRule(as_numpy_actor(actor), Observer(SC, NET, layout))
        for rule in (drl, make_rule("slack-reliable-k", {"probes": k})):
            m = simulate(SC, NET, seeds, rule)
            assert m["probes"].sum() == k * m["tasks"].sum()


def test_the_rule_chooses_only_among_itself_and_its_probed_peers():
    rule = make_rule("slack-reliable-k", {"probes": 1})
    env = OffloadVecEnv(SC, NET)
    env.reset([7, 8])
    for _ in range(8):
        e = env.engine
        state = e.node_state()
        b, i = np.nonzero(e.ep.has_task[:, e.t, :])
        if b.size:
            view = node_views(e, state, b, i, rule.reads)
            chosen = rule.choose(view, probe_answers(e, state, b))
            assert rule.probe_targets(view)[np.arange(b.size), chosen].all()
        env.step(rule_actions(e, rule)[0])
    with pytest.raises(ProbeBudgetError):
        simulate(SC, NET, [0], make_rule("slack-reliable-k", {"probes": 5}))


def test_testbed_node_probes_exactly_the_k_targets():
    # The testbed's decision path (Decider.choose + probe_nodes) sends a real request to each
    # of the k peers the rule names, and to no other.
    from o2o.testbed import wire
    from o2o.testbed.node.decide import Decider, probe_nodes

    _, drl = drl_rule()
    env = OffloadVecEnv(SC, NET, obs_layout=K2)
    env.reset([2])
    e = env.engine
    state = e.node_state()
    b, i = np.nonzero(e.ep.has_task[:, e.t, :])
    decider = Decider()
    decider.rule = drl
    for r in range(b.size):
        view = node_views(e, state, b[r:r + 1], i[r:r + 1], drl.reads)
        asked = []

        def answer(j):
            return wire.ProbeAnswer(id=1, capacity_hz=float(NET.capacity_hz[j]),
                                    node_fail_rate=float(NET.node_fail_rate[j]),
                                    exec_backlog_s=float(state.exec_backlog_s[b[r], j]),
                                    overloaded=bool(state.overloaded[b[r], j]), exec_len=0)

        async def ask(j):
            asked.append(j)
            return answer(j)

        async def probe(targets):
            return await probe_nodes(targets, int(i[r]), NET, ask, lambda: answer(int(i[r])),
                                     np.zeros(5, dtype=bool))

        dest, prob, backlog = asyncio.run(decider.choose(view, probe, lambda: 0.0))
        want = np.flatnonzero(drl.probe_targets(view)[0] & (np.arange(5) != i[r]))
        assert sorted(asked) == want.tolist() and len(asked) == 2
        assert dest == i[r] or dest in asked
        assert sum(x is not None for x in backlog) == 3   # itself and its 2 probed peers


def test_models_record_k_and_older_layouts_load(tmp_path):
    for layout in ("o2o-obs-v1", "o2o-obs-v2", OBS_LAYOUT_V3, K2):
        head = "plain" if layout == "o2o-obs-v1" else "scorer"
        torch.manual_seed(1)
        d = obs_dim(5, layout)
        arrays = policy_arrays(Actor(d, 6, (8,), head=head), Critic(d, (8,)))
        url = str(tmp_path / layout)
        save_model(url, arrays, nodes=5, hidden=(8,), actor_head=head, obs_layout=layout)
        model = load_model(url, nodes=5)
        assert model.obs_layout == layout
        rule = DRLRule.from_model(model, SC, NET)
        assert rule.observer.probes == layout_probes(layout)
        m = simulate(SC, NET, [0, 1], rule)
        k = layout_probes(layout) or 4
        assert m["probes"].sum() == k * m["tasks"].sum()


def test_known_and_probed_layouts():
    """Every k-probe name is a layout; v1 is the only one without what a node probes (IV-B1)."""
    for name in (OBS_LAYOUT_VERSION, OBS_LAYOUT_V2, OBS_LAYOUT_V3, "o2o-obs-v3-k1", "o2o-obs-v3-k19"):
        assert is_known_layout(name)
        assert is_probed(name) == (name != OBS_LAYOUT_VERSION)
    for name in ("o2o-obs-v3-k0", "o2o-obs-v3-k", "o2o-obs-v9", "", None, 3):
        assert not is_known_layout(name) and not is_probed(name)


def test_command_line_refuses_an_unknown_layout(tmp_path, capsys):
    assert main(["train", "online", "--from-scratch", "--obs-layout", "o2o-obs-v9", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "'o2o-obs-v9' is not an observation layout" in err and "o2o-obs-v3-k<k>" in err
    assert not (tmp_path / "m").exists()


def test_command_line_refuses_a_bad_k(tmp_path, capsys):
    assert main(["tune", "--scheduler", "slack-reliable-k", "--probes", "5", "--set", "nodes=5",
                 "--set", "slots=10", "--episodes", "1", "--out", str(tmp_path / "t.json")]) == 2
    assert "N - 1 = 4" in capsys.readouterr().err
    assert main(["simulate", "--scheduler", "slack-reliable-k", "--set", "nodes=2", "--set", "slots=5",
                 "--episodes", "1"]) == 2
    assert "N - 1 = 1" in capsys.readouterr().err
    assert main(["train", "online", "--from-scratch", "--obs-layout", "o2o-obs-v3-k7", "--set", "nodes=5",
                 "--set", "slots=10", "--episodes", "2", "--eval-episodes", "0",
                 "--out", str(tmp_path / "m")]) == 2
    assert "N - 1 = 4" in capsys.readouterr().err


def test_probes_curve_command_at_a_tiny_size(tmp_path, capsys):
    import json

    out = tmp_path / "curve"
    assert main(["probes-curve", "--set", "nodes=4", "--set", "slots=10", "--k", "1,3", "--quick",
                 "--seeds", "1", "--workers", "1", "--log-episodes", "3", "--offline-steps", "5",
                 "--online-episodes", "2", "--eval-episodes", "3", "--tune-episodes", "1",
                 "--out", str(out)]) == 0
    result = json.loads((out / "probes_curve.json").read_text())
    assert [p["k"] for p in result["points"]] == [1, 3] and (out / "probes_curve.png").exists()
    for p in result["points"]:
        assert p["learner"]["probes_per_task"] == p["k"] == p["rule"]["probes_per_task"]
        assert p["rule"]["tuning"]["params"]["probes"] == p["k"]
        for who in ("learner", "rule"):   # per episode, so that a later comparison can pair
            assert len(p[who]["per_episode"]) == 3
            assert abs(sum(p[who]["per_episode"]) / 3 - p[who]["success_rate"]["mean"]) < 1e-12
        model = load_model(str(out / f"k{p['k']}" / "models" / "o2o-drl" / "seed0"))
        assert model.obs_layout == f"o2o-obs-v3-k{p['k']}"
    capsys.readouterr()
    for bad in ("0,2", "4", "2,2"):
        assert main(["probes-curve", "--set", "nodes=4", "--k", bad, "--out", str(tmp_path / "x")]) == 2
        assert "--k" in capsys.readouterr().err


def test_probes_curve_logs_the_tuned_teacher_with_log_tuned(tmp_path):
    """--log-tuned: the teacher of every k runs at its values tuned for the network on
    validation episodes (recorded in the result); without it, at its defaults."""
    import json

    from o2o.core.network import sample_network
    from o2o.core.scenario import load_scenario
    from o2o.experiments.tuning import tune_rule

    sc = load_scenario("paper-sim", ["nodes=4", "slots=10"])
    want = tune_rule(sc, sample_network(sc, 0), "slack-reliable", network_seed=0)["params"]
    for flag, params in (("--log-tuned", want), ("--no-log-tuned", None)):
        out = tmp_path / flag
        assert main(["probes-curve", "--set", "nodes=4", "--set", "slots=10", "--k", "2", "--quick",
                     "--seeds", "1", "--workers", "1", "--log-episodes", "3", "--offline-steps", "5",
                     "--online-episodes", "2", "--eval-episodes", "3", "--tune-episodes", "1",
                     "--log-heuristic", "slack-reliable", flag, "--out", str(out)]) == 0
        logging = json.loads((out / "probes_curve.json").read_text())["logging"]
        assert logging == {"heuristic": "slack-reliable", "params": params}
