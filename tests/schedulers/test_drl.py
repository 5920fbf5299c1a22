"""The drl scheduler in the simulator: the same observation as the env, reproducible sampling."""

import numpy as np
import pytest
import torch

from o2o.core.decpomdp import OBS_LAYOUT_V2, OBS_LAYOUT_VERSION, Observer, obs_dim
from o2o.core.episodes import sample_episodes
from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.learn.evaluate import as_numpy_actor, evaluate_policy
from o2o.learn.nets import Actor
from o2o.schedulers.drl import DRLRule
from o2o.sim.rollout import rollout, simulate
from tests.helpers import per_node_matches_env

SC = load_scenario("paper-sim", ["nodes=5", "slots=12"])
NET = sample_network(SC, 3)


def rule(seed=0, self_head=False, layout=OBS_LAYOUT_VERSION, head=None):
    torch.manual_seed(seed)
    actor = Actor(obs_dim(5, layout), 6, (64, 64), self_head, head)
    return DRLRule(as_numpy_actor(actor), Observer(SC, NET, layout)), actor


@pytest.mark.parametrize("layout,head", [(OBS_LAYOUT_VERSION, "plain"), (OBS_LAYOUT_V2, "plain"),
                                         (OBS_LAYOUT_V2, "scorer"), (OBS_LAYOUT_V2, "set-scorer")])
def test_rule_builds_the_env_observation_and_mask(layout, head):
    # The drl rule builds its observation from NodeView + ProbeAnswers (what a testbed node has
    # after its probes); the env from the engine's arrays: the same, for v1 and v2.
    drl, actor = rule(layout=layout, head=head)
    view, obs, mask, _, _ = per_node_matches_env(SC, NET, drl, layout)
    assert drl.probe_targets(view).all()
    # The numpy actor (what a node runs) equals the torch actor on these observations.
    with torch.no_grad():
        want = actor.probs(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(drl.actor.probs(obs, mask), want, atol=1e-5)


def test_rule_runs_in_simulate_reproducibly_with_probabilities():
    drl, actor = rule()
    seeds = [0, 1, 2, 3]
    m1 = simulate(SC, NET, seeds, drl, batch_size=3)
    m2 = simulate(SC, NET, seeds, rule()[0], batch_size=2)
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])
    assert m1["tasks"].sum() > 0 and 0 <= m1["success_rate"].min() <= m1["success_rate"].max() <= 1
    ro = rollout(SC, NET, sample_episodes(SC, NET, seeds), drl)
    has = ro.engine.ep.has_task
    assert np.isfinite(ro.action_prob[has]).all() and (ro.action_prob[has] > 0).all()
    assert np.isnan(ro.action_prob[~has]).all()
    assert (ro.actions[has] < 5).all() and (ro.actions[~has] == 5).all()
    # evaluate_policy runs the same rule from the torch actor
    np.testing.assert_array_equal(evaluate_policy(SC, NET, actor, seeds)["success_rate"], m1["success_rate"])


def test_rule_never_sends_to_an_overloaded_peer():
    # A tiny overload threshold and a task at every node in every slot: peers are often flagged.
    sc = load_scenario("paper-sim", ["nodes=4", "slots=30", "queue_coef=0.01", "arrival_prob=1"])
    net = sample_network(sc, 0)
    torch.manual_seed(0)
    drl = DRLRule(as_numpy_actor(Actor(18, 5)), Observer(sc, net))
    overloaded_sends = overloaded_seen = 0

    def check(engine, actions, probs):
        nonlocal overloaded_sends, overloaded_seen
        state = engine.node_state()
        overloaded_seen += int(state.overloaded.sum())
        b, i = np.nonzero(engine.ep.has_task[:, engine.t, :])
        j = actions[b, i]
        overloaded_sends += int((state.overloaded[b, j] & (j != i)).sum())

    rollout(sc, net, sample_episodes(sc, net, [0, 1]), drl, on_step=check)
    assert overloaded_seen > 0 and overloaded_sends == 0


def test_mean_ci95():
    mean, lo, hi = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == mean - lo
    # t_{0.975, 2} = 4.302653 (tables), std = 1
    assert hi - mean == pytest.approx(4.302653 / np.sqrt(3), rel=1e-6)
    # 60 values: t_{0.975, 59} = 2.000995, not the normal 1.96
    x = np.r_[np.zeros(30), np.ones(30)]
    assert mean_ci95(x)[2] - 0.5 == pytest.approx(2.000995 * x.std(ddof=1) / np.sqrt(60), rel=1e-6)
    mean, lo, hi = mean_ci95([0.5])   # one value: no interval
    assert mean == 0.5 and np.isnan(lo) and np.isnan(hi)
