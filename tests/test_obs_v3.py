"""Observation o2o-obs-v3 and where a model may run (issue 20, goal 1; paper IV-B1, IV-C2).

v3 features mean the same under every scenario and every N (fixed ``FeatureScales``, no one-hot);
a model's manifest says at which N (``nodes_range``) and under which scenario ranges
(``trained_ranges``) it runs, and everything that binds a model to a scenario refuses the rest.
"""

import json

import numpy as np
import pytest
import torch

from o2o.cli.main import main
from o2o.core.decpomdp import (
    CANDIDATE_FEATURES,
    OBS_LAYOUT_V2,
    OBS_LAYOUT_V3,
    FeatureScales,
    Observer,
    candidate_index,
    nodes_of,
    obs_dim,
)
from o2o.core.network import Network, sample_network
from o2o.core.scenario import load_scenario
from o2o.learn.evaluate import as_numpy_actor, evaluate_policy
from o2o.learn.nets import Actor, Critic, policy_arrays
from o2o.learn.policy import Policy
from o2o.models import ModelError, check_scenario_fits, load_model, save_model, scenario_ranges
from o2o.schedulers.drl import DRLRule, NumpyActor
from tests.helpers import per_node_matches_env

SC = load_scenario("paper-sim", ["nodes=5", "slots=12"])
NET = sample_network(SC, 3)


def inputs(n, m=None, seed=0):
    """Random node states and tasks of ``m`` rows of an ``n``-node network (node r % n decides)."""
    rng = np.random.default_rng(seed)
    m = m or 2 * n
    node = np.arange(m) % n
    has = rng.random(m) < 0.7
    exec_len = rng.integers(0, 30, m)
    recv = rng.integers(0, 4, (m, n))
    size = rng.uniform(1e6, 9e6, m)
    cycles = size * 8 * rng.uniform(800, 2400, m)
    deadline = np.full(m, 4.0)
    probed = (rng.uniform(0, 12, (m, n)), rng.uniform(0, 3, (m, n)), rng.random((m, n)) < 0.3)
    return node, exec_len, recv, has, size, cycles, deadline, probed


def observe(scenario, network, layout, args, scales=None):
    node, exec_len, recv, has, size, cycles, deadline, probed = args
    return Observer(scenario, network, layout, scales).observe(node, exec_len, recv, has, size, cycles,
                                                               deadline, probed)


# ------------------------------------------------------------------------------------ layout


def test_v3_layout_sizes_and_values():
    for n in (2, 5, 50):
        assert obs_dim(n, OBS_LAYOUT_V3) == 7 + 10 * n and nodes_of(7 + 10 * n, OBS_LAYOUT_V3) == n
        assert candidate_index(n, OBS_LAYOUT_V3).shape == (n, CANDIDATE_FEATURES)
    args = inputs(5)
    obs = observe(SC, NET, OBS_LAYOUT_V3, args)
    assert obs.shape == (10, 57) and obs.dtype == np.float32
    assert (obs >= 0).all() and (obs <= 1).all()
    node, exec_len, recv, has, size, cycles, deadline, probed = args
    s = FeatureScales()
    # The node part in physical units over the fixed scales.
    np.testing.assert_allclose(obs[:, 0], np.minimum(NET.arrival_prob[node] / SC.slot_s / s.arrivals_per_s, 1), rtol=1e-6)
    np.testing.assert_allclose(obs[:, 2], NET.capacity_hz[node] / s.capacity_hz, rtol=1e-6)
    np.testing.assert_allclose(obs[:, 4], np.where(has, size / s.task_bytes, 0), rtol=1e-6)
    blocks = obs[:, 7:].reshape(10, 10, 5)
    assert (blocks[:, 0] == np.eye(5)[node]).all()                     # is-itself, no one-hot
    assert (blocks[np.arange(10), 1, node] == 0).all()                 # nothing sent to itself
    # Blocks 2-8 are v2's seven blocks (only their scales differ: the same est/2d, rel, flag).
    v2 = observe(SC, NET, OBS_LAYOUT_V2, args)[:, 3 * 5 + 6:].reshape(10, 7, 5)
    np.testing.assert_array_equal(blocks[:, 5:9], v2[:, 3:7])


def test_v3_features_of_a_task_are_identical_under_scenarios_that_differ_only_in_ranges():
    # Same network arrays, same queues, same task; scenario B differs in every range.
    b = load_scenario("paper-sim", ["nodes=5", "slots=12", "arrival_prob=[0, 0.6]",
                                    "task_size_kb=[1000, 12000]", "complexity=[500, 3000]",
                                    "node_fail_rate=[0, 0.3]", "link_fail_rate=[0, 0.1]",
                                    "link_rate_mbps=[5, 80]", "deadline_s=[2, 6]", "cores=[4, 64]"])
    args = inputs(5)
    np.testing.assert_array_equal(observe(SC, NET, OBS_LAYOUT_V3, args), observe(b, NET, OBS_LAYOUT_V3, args))
    # v2 divides by the scenario's maxima: the same task reads differently there.
    assert not np.array_equal(observe(SC, NET, OBS_LAYOUT_V2, args), observe(b, NET, OBS_LAYOUT_V2, args))
    # The scales, not the scenario, set the features.
    other = FeatureScales(task_bytes=2 * FeatureScales().task_bytes)
    assert not np.array_equal(observe(SC, NET, OBS_LAYOUT_V3, args),
                              observe(SC, NET, OBS_LAYOUT_V3, args, other))


def test_v3_candidate_features_do_not_depend_on_n():
    # The first 4 nodes of the network as a network of their own: node 0's features of each of
    # those 4 candidates are the same whether the network has 4 or 5 nodes.
    small = Network(**{f: (v[:4, :4] if v.ndim == 2 else v[:4]) for f, v in
                       ((f, getattr(NET, f)) for f in Network.__dataclass_fields__)})
    rows = inputs(5, m=40)[0] < 4                  # rows of the nodes both networks have
    node, exec_len, recv, has, size, cycles, deadline = (x[rows] for x in inputs(5, m=40)[:7])
    probed = tuple(p[rows] for p in inputs(5, m=40)[7])
    big = observe(SC, NET, OBS_LAYOUT_V3, (node, exec_len, recv, has, size, cycles, deadline, probed))
    few = observe(SC, small, OBS_LAYOUT_V3, (node, exec_len, recv[:, :4], has, size, cycles, deadline,
                                             tuple(p[:, :4] for p in probed)))
    feats_big = big[:, candidate_index(5, OBS_LAYOUT_V3)][:, :4]
    feats_few = few[:, candidate_index(4, OBS_LAYOUT_V3)]
    np.testing.assert_array_equal(feats_big, feats_few)


@pytest.mark.parametrize("head", ["plain", "scorer", "set-scorer"])
def test_v3_simulator_and_per_node_observations_are_equal(head):
    # What the env builds for all nodes of all episodes at once equals what the drl rule builds
    # from one node's view and probe answers (a testbed node), as for v1 and v2.
    torch.manual_seed(0)
    actor = Actor(obs_dim(5, OBS_LAYOUT_V3), 6, (16, 16), head=head)
    drl = DRLRule(as_numpy_actor(actor), Observer(SC, NET, OBS_LAYOUT_V3))
    _, obs, mask, _, _ = per_node_matches_env(SC, NET, drl, OBS_LAYOUT_V3)
    with torch.no_grad():
        want = actor.probs(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(drl.actor.probs(obs, mask), want, atol=1e-5)


def test_v3_rebuilt_transitions_equal_the_environment():
    from o2o.core.episodes import sample_episodes
    from o2o.logs.dataset import dataset_feature_scales, simulated_dataset
    from o2o.logs.records import episode_logs_from_rollout
    from o2o.logs.transitions import rebuild_transitions
    from o2o.sim import make_scheduler
    from o2o.sim.env import OffloadVecEnv
    from o2o.sim.rollout import rule_actions

    seeds = [4, 5]
    spread = make_scheduler("spread")
    logs = episode_logs_from_rollout(SC, NET, sample_episodes(SC, NET, seeds), spread)
    tr = rebuild_transitions(SC, NET, logs, "node", OBS_LAYOUT_V3)
    env = OffloadVecEnv(SC, NET, "node", OBS_LAYOUT_V3)
    obs, _ = env.reset(seeds)
    got = []
    while not env.engine.done:
        got.append(obs)
        obs, *_ = env.step(rule_actions(env.engine, spread)[0])
    np.testing.assert_array_equal(tr.observations, np.stack(got, axis=1))
    data = simulated_dataset(SC, NET, spread, seeds, "node", obs_layout=OBS_LAYOUT_V3)
    assert dataset_feature_scales(data) == FeatureScales()


# ------------------------------------------------------------------------ where models run


def save(url, layout, head="scorer", nodes=5, **where):
    torch.manual_seed(1)
    d = obs_dim(nodes, layout)
    arrays = policy_arrays(Actor(d, nodes + 1, (16, 16), head=head), Critic(d, (16, 16)))
    return save_model(url, arrays, nodes=nodes, hidden=(16, 16), actor_head=head, obs_layout=layout, **where)


def scenario(nodes, *more):
    return load_scenario("paper-sim", [f"nodes={nodes}", "slots=10", *more])


def test_a_model_runs_at_another_n_only_when_its_manifest_allows_it(tmp_path):
    v2, v3 = str(tmp_path / "v2"), str(tmp_path / "v3")
    save(v2, OBS_LAYOUT_V2)
    m = save(v3, OBS_LAYOUT_V3, nodes_range=(3, 9))
    assert m["nodes_range"] == [3, 9] and m["feature_scales"] == FeatureScales().model_dump()
    # v2: its own N only, by load_model and by the drl rule.
    with pytest.raises(ModelError, match="is for 5 nodes, but the network has 7"):
        load_model(v2, nodes=7)
    with pytest.raises(ModelError, match="is for 5 nodes"):
        DRLRule.from_model(load_model(v2), scenario(7), sample_network(scenario(7), 0))
    with pytest.raises(ValueError, match="only a scorer head on layout o2o-obs-v3"):
        save(str(tmp_path / "v2r"), OBS_LAYOUT_V2, nodes_range=(3, 9))
    with pytest.raises(ValueError, match="only a scorer head"):
        save(str(tmp_path / "v3p"), OBS_LAYOUT_V3, head="plain", nodes_range=(3, 9))
    # v3 scorer with a range: inside accepted (same weights, any N), outside refused.
    for n in (3, 7, 9):
        sc = scenario(n)
        net = sample_network(sc, 0)
        rule = DRLRule.from_model(v3, sc, net)
        assert rule.actor.n_actions == n + 1 and rule.observer.dim == obs_dim(n, OBS_LAYOUT_V3)
        metrics = evaluate_policy(sc, net, load_model(v3, nodes=n), [0, 1])
        assert metrics["tasks"].sum() > 0
        # The numpy actor at N equals the torch actor built at N from the same arrays.
        model = load_model(v3, nodes=n)
        torch_actor = Actor(obs_dim(n, OBS_LAYOUT_V3), n + 1, (16, 16), head="scorer")
        torch_actor.net.load_arrays(model.arrays, "actor")
        obs = Observer(sc, net, OBS_LAYOUT_V3).observe(*inputs(n)[:7], inputs(n)[7])
        mask = np.ones((obs.shape[0], n + 1), dtype=bool)
        with torch.no_grad():
            want = torch_actor.probs(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
        np.testing.assert_allclose(NumpyActor.from_model(model, n).probs(obs, mask), want, atol=1e-5)
    for n in (2, 10):
        with pytest.raises(ModelError, match=r"runs on 3 to 9 nodes \(its nodes_range\), but the network has"):
            load_model(v3, nodes=n)
        with pytest.raises(ModelError, match="nodes_range"):
            DRLRule.from_model(load_model(v3), scenario(n), sample_network(scenario(n), 0))
    # Fine-tuning needs the critic, whose input is that of the training N.
    with pytest.raises(ModelError, match="critic reads the observation of 5 nodes"):
        load_model(v3, nodes=7, need_critic=True)
    assert Policy.load(v3, nodes=5, need_critic=True)[0].actor.feature_scales == FeatureScales()


def test_a_manifest_edited_to_a_range_its_weights_cannot_run_is_refused(tmp_path):
    url = str(tmp_path / "m")
    save(url, OBS_LAYOUT_V2)
    path = tmp_path / "m" / "manifest.json"
    m = json.loads(path.read_text())
    m["nodes_range"] = [3, 9]
    path.write_text(json.dumps(m))
    with pytest.raises(ModelError, match="manifest field nodes_range"):
        load_model(url)
    m["nodes_range"], m["trained_ranges"] = [5, 5], {"nodes_per_rack": [1, 2]}
    path.write_text(json.dumps(m))
    with pytest.raises(ModelError, match="nodes_per_rack"):
        load_model(url)


def test_older_manifests_load_as_before(tmp_path):
    # A manifest written before nodes_range and trained_ranges: its N, any scenario.
    url = str(tmp_path / "old")
    save(url, OBS_LAYOUT_V2)
    path = tmp_path / "old" / "manifest.json"
    m = json.loads(path.read_text())
    del m["nodes_range"]
    path.write_text(json.dumps(m))
    model = load_model(url, nodes=5)
    assert model.nodes_range == (5, 5) and model.trained_ranges is None and model.feature_scales is None
    wide = scenario(5, "task_size_kb=[1000, 20000]")
    DRLRule.from_model(model, wide, sample_network(wide, 0))
    with pytest.raises(ModelError, match="is for 5 nodes, but the network has 6"):
        load_model(url, nodes=6)


def test_a_scenario_outside_the_trained_ranges_is_refused_naming_the_field(tmp_path):
    url = str(tmp_path / "m")
    save(url, OBS_LAYOUT_V3, nodes_range=(3, 9), trained_ranges=scenario_ranges(scenario(5)))
    model = load_model(url)
    inside = scenario(7, "arrival_prob=[0.1, 0.6]", "task_size_kb=[2000, 8000]", "cores=[8, 16]")
    DRLRule.from_model(model, inside, sample_network(inside, 0))
    for override, field in [("task_size_kb=[1000, 12000]", "task_size_kb"),
                            ("node_fail_rate=[0, 0.3]", "node_fail_rate"),
                            ("deadline_s=2", "deadline_s"), ("cores=[4, 64]", "cores"),
                            ("link_rate_mbps=[5, 40]", "link_rate_mbps")]:
        outside = scenario(5, override)
        with pytest.raises(ModelError, match=rf"trained on {field} in \[.*\], but scenario .* has {field}"):
            check_scenario_fits(model, outside)
        with pytest.raises(ModelError, match=field):
            DRLRule.from_model(model, outside, sample_network(outside, 0))
        with pytest.raises(ModelError, match=field):
            evaluate_policy(outside, sample_network(outside, 0), model, [0])


def test_a_v3_model_builds_its_observations_with_its_own_scales(tmp_path):
    url = str(tmp_path / "m")
    scales = FeatureScales(task_bytes=3e7, backlog_s=20.0)
    save(url, OBS_LAYOUT_V3, feature_scales=scales)
    model = load_model(url)
    assert model.feature_scales == scales
    rule = DRLRule.from_model(model, SC, NET)
    assert rule.observer.scales == scales and rule.actor.feature_scales == scales
    assert Policy.from_model(model).actor.feature_scales == scales
    with pytest.raises(ValueError, match="feature scales belong to layout o2o-obs-v3"):
        save(str(tmp_path / "v2"), OBS_LAYOUT_V2, feature_scales=scales)
    with pytest.raises(ModelError, match="actor reads o2o-obs-v3 observations at its own feature scales"):
        DRLRule(NumpyActor.from_model(model), Observer(SC, NET, OBS_LAYOUT_V3))


def test_train_v3_at_one_n_then_run_it_at_another(tmp_path, capsys):
    # The smoke run of the issue: online-only training on v3 (nodes=5, slots=20, a few
    # episodes) with a range of N, then the model at 7 nodes via the API and `o2o simulate`.
    out = str(tmp_path / "m")
    assert main(["train", "online", "--from-scratch", "--obs-layout", "o2o-obs-v3", "--set", "nodes=5",
                 "--set", "slots=20", "--episodes", "8", "--eval-episodes", "0", "--nodes-range", "3", "9",
                 "--out", out, "--json"]) == 0
    capsys.readouterr()
    model = load_model(out, nodes=7)
    assert model.obs_layout == OBS_LAYOUT_V3 and model.nodes == 5 and model.nodes_range == (3, 9)
    assert model.trained_ranges == scenario_ranges(scenario(5))
    sc7 = load_scenario("paper-sim", ["nodes=7", "slots=20"])
    assert evaluate_policy(sc7, sample_network(sc7, 0), model, [0, 1])["tasks"].sum() > 0
    assert main(["simulate", "--model", out, "--set", "nodes=7", "--set", "slots=20", "--episodes", "2",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["drl"]["tasks"] > 0
    assert main(["simulate", "--model", out, "--set", "nodes=12", "--episodes", "2"]) == 2
    assert "nodes_range" in capsys.readouterr().err
    assert main(["simulate", "--model", out, "--set", "nodes=7", "--set", "arrival_prob=[0, 1]",
                 "--set", "complexity=[800, 4000]", "--episodes", "2"]) == 2
    assert "complexity" in capsys.readouterr().err
    # A range is refused before training where the weights depend on N.
    assert main(["train", "online", "--from-scratch", "--obs-layout", "o2o-obs-v2", "--set", "nodes=5",
                 "--set", "slots=20", "--episodes", "8", "--eval-episodes", "0", "--nodes-range", "3", "9",
                 "--out", str(tmp_path / "v2")]) == 2
    assert "only a scorer head on layout o2o-obs-v3" in capsys.readouterr().err


def test_learner_settings_select_v3_for_the_scorer_and_refuse_what_reads_v1_v2_columns():
    from o2o.core.errors import UserError
    from o2o.learn.settings import learner_settings

    s = learner_settings("project", obs_layout=OBS_LAYOUT_V3)
    assert s.obs_layout == OBS_LAYOUT_V3 and s.offline.actor_head == s.online.actor_head == "scorer"
    with pytest.raises(UserError, match="self actor head .* one-hot"):
        learner_settings("project", obs_layout=OBS_LAYOUT_V3, online=["actor_head=self"])
    with pytest.raises(UserError, match="central critic"):
        learner_settings("project", obs_layout=OBS_LAYOUT_V3, offline=["critic_input=central"])
