"""The rule prior of the scorer (``rule_prior``): slack-reliable's log-weight added to each
candidate's score, the same in torch and numpy, kept in model files, and at MLP zero the rule."""

import json

import numpy as np
import pytest
import torch

from o2o.core.decpomdp import CANDIDATE_FEATURES, OBS_LAYOUT_V2, obs_dim
from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.learn.evaluate import as_numpy_actor
from o2o.learn.nets import Actor, Critic
from o2o.learn.policy import Policy
from o2o.learn.settings import learner_settings
from o2o.models import ModelError, load_model
from o2o.schedulers.base import estimate
from o2o.schedulers.drl import DRLRule, NumpyActor, RulePrior
from o2o.schedulers.heuristics import Rule, SlackReliable
from o2o.core.decpomdp import Observer
from o2o.sim.rollout import simulate

N = 5
D2 = obs_dim(N, OBS_LAYOUT_V2)
PRIOR = (0.9, 0.7, 16.0, 1.0, 10.0)


def random_obs(m=256, seed=0):
    """v2 observations in [0, 1] with a one-hot, some own estimates below the local margin."""
    rng = np.random.default_rng(seed)
    obs = rng.random((m, D2)).astype(np.float32)
    node = rng.integers(0, N, m)
    obs[:, :N] = np.eye(N, dtype=np.float32)[node]
    est = 3 * N + 6 + 3 * N                      # block 3: est_ij / (2 d)
    obs[: m // 3, est + node[: m // 3]] = 0.2    # est_ii / d = 0.4 <= local_margin
    mask = rng.random((m, N + 1)) < 0.7
    mask[np.arange(m), node] = True
    mask[:, N] = False
    return obs, mask


@pytest.mark.parametrize("head,prior", [("scorer", PRIOR), ("set-scorer", PRIOR), ("scorer", (*PRIOR, 2.0))])
def test_torch_and_numpy_prior_give_the_same_logits(head, prior):
    torch.manual_seed(0)
    actor = Actor(D2, N + 1, (16, 16), head=head, rule_prior=prior)
    # the last layer starts at zero: the logits are the prior alone
    obs, mask = random_obs()
    with torch.no_grad():
        z0 = actor.logits(torch.from_numpy(obs)).numpy()
    x = obs[:, actor.index.numpy()]
    np.testing.assert_allclose(z0[:, :N], RulePrior(*prior).logits(x), rtol=1e-6, atol=1e-5)
    with torch.no_grad():
        for p in actor.parameters():
            p.normal_(0.0, 0.5)
        z = actor.logits(torch.from_numpy(obs)).numpy()
        want = actor.probs(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
    np_actor = as_numpy_actor(actor)
    assert np_actor.rule_prior == RulePrior(*prior)
    np.testing.assert_allclose(np_actor.logits(obs), z, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np_actor.probs(obs, mask), want, atol=1e-5)


def test_prior_is_the_rules_log_weight_by_hand():
    x = np.zeros((1, 4, CANDIDATE_FEATURES), np.float32)
    # candidate: [is-itself, est/(2d), rel]; itself at est/d 0.95: infeasible (peer_margin 0.7), not local
    for j, (me, half_est, rel) in enumerate([(1, 0.475, 0.9), (0, 0.1, 0.95), (0, 0.3, 0.99), (0, 0.6, 1.0)]):
        x[0, j, [0, 5, 7]] = me, half_est, rel
    z = RulePrior(*PRIOR).logits(x)[0]
    assert z[0] == pytest.approx(-20 - 40 * 0.95)                  # infeasible: -2C - 4C est/d
    assert z[1] == pytest.approx(16 * np.log(0.95) + np.log(0.8), rel=1e-6)
    assert z[2] == pytest.approx(16 * np.log(0.99) + np.log(0.4), rel=1e-6)
    assert z[3] == pytest.approx(-20 - 40 * 1.2)
    assert z[3] < z[0] < z[1]                                       # the earliest infeasible first
    x[0, 0, 5] = 0.45                                               # est_ii / d = 0.9 <= local_margin
    assert RulePrior(*PRIOR).logits(x)[0, 0] == 10.0
    x[0, 1, 7] = 1e-9                                               # rel^16 below e^-C: clipped
    assert RulePrior(*PRIOR).logits(x)[0, 1] == -10.0
    # the softer barrier: the clipped log-weight - gap - est/d
    z = RulePrior(*PRIOR, gap=2.0).logits(x)[0]
    assert z[3] == pytest.approx(-10 - 2 - 1.2)
    x[0, 3, [5, 7]] = 0.4, 0.99                                     # est/d 0.8 > peer_margin
    assert RulePrior(*PRIOR, gap=2.0).logits(x)[0, 3] == pytest.approx(16 * np.log(0.99) + np.log(0.2) - 2 - 0.8, rel=1e-6)


class _Both(Rule):
    """Runs slack-reliable and records, at every decision, the prior-only actor's probabilities
    beside the rule's, and whether some node was feasible for the rule."""

    name = "both"

    def __init__(self, drl: DRLRule, rule: SlackReliable):
        self.drl, self.rule, self.rows = drl, rule, []
        self.reads = drl.reads | rule.reads

    def probe_targets(self, view):
        return np.ones((view.m, view.n), dtype=bool)

    def choose(self, view, probes):
        want = self.rule.probabilities(view, probes)
        obs, mask = self.drl.observe(view, probes)
        got = self.drl.actor.probs(obs, mask)[:, :view.n]
        est, _ = estimate(view, probes, np.broadcast_to(np.arange(view.n), (view.m, view.n)))
        allowed = ~np.asarray(probes.overloaded, dtype=bool)
        allowed[np.arange(view.m), view.node] = True
        some = (allowed & (est <= self.rule.peer_margin * view.deadline_s[:, None])).any(axis=1)
        local = est[np.arange(view.m), view.node] <= self.rule.local_margin * view.deadline_s
        self.rows.append((np.abs(got - want).max(axis=1), some | local, want.argmax(1), got.argmax(1)))
        return self.rule.choose(view, probes)


def test_prior_alone_is_slack_reliable_in_the_simulator():
    sc = load_scenario("paper-sim", ["nodes=6", "slots=20"])
    net = sample_network(sc, 0)
    values = (0.9, 0.7, 4.0, 1.0)
    actor = Actor(obs_dim(6, OBS_LAYOUT_V2), 7, (8, 8), head="scorer", rule_prior=(*values, 20.0))
    both = _Both(DRLRule(as_numpy_actor(actor), Observer(sc, net, OBS_LAYOUT_V2)), SlackReliable(*values))
    simulate(sc, net, [900100, 900101], both)
    diff, covered, a_rule, a_prior = (np.concatenate(c) for c in zip(*both.rows))
    assert covered.mean() > 0.5
    # where the rule has a feasible node (or keeps the task), the same distribution up to e^-C;
    # where none is feasible, the prior's mode is the earliest node, the rule's choice
    assert diff[covered].max() < 1e-6
    assert (a_rule == a_prior).all()


def test_saved_model_keeps_the_prior_and_older_models_load(tmp_path):
    torch.manual_seed(3)
    actor = Actor(D2, N + 1, (16, 16), head="scorer", rule_prior=PRIOR)
    with torch.no_grad():
        actor.net.linears[-1].weight.normal_()
    manifest = Policy(actor, Critic(D2, (16, 16)), "node").save(str(tmp_path / "p"))
    assert manifest["rule_prior"] == dict(zip(RulePrior.FIELDS, PRIOR))    # no gap: not written
    policy, model = Policy.load(str(tmp_path / "p"), nodes=N, need_critic=True)
    assert policy.actor.rule_prior == RulePrior(*PRIOR)
    obs, mask = random_obs(seed=1)
    with torch.no_grad():
        want = actor.probs(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
        again = policy.actor.probs(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(again, want, atol=1e-7)
    np.testing.assert_allclose(NumpyActor.from_model(model).probs(obs, mask), want, atol=1e-5)
    # with the gap
    gapped = Actor(D2, N + 1, (16, 16), head="scorer", rule_prior=(*PRIOR, 3.0))
    Policy(gapped, None).save(str(tmp_path / "g"))
    assert Policy.load(str(tmp_path / "g"), nodes=N)[0].actor.rule_prior == RulePrior(*PRIOR, gap=3.0)
    # A model without the field (every model before the prior) loads as no prior.
    plain = Actor(D2, N + 1, (16, 16), head="scorer")
    m = Policy(plain, None).save(str(tmp_path / "old"))
    assert "rule_prior" not in m
    policy, model = Policy.load(str(tmp_path / "old"), nodes=N)
    assert model.rule_prior is None and policy.actor.rule_prior is None
    assert NumpyActor.from_model(model).rule_prior is None
    # A broken field is refused.
    bad = json.loads((tmp_path / "p" / "manifest.json").read_text())
    bad["rule_prior"] = {"local_margin": 0.9}
    (tmp_path / "p" / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(ModelError, match="rule_prior"):
        load_model(str(tmp_path / "p"))


def test_settings():
    s = learner_settings("project", offline=["rule_prior=[0.9,0.7,16,1]"], online=["rule_prior=[1,0.8,4,2,20]"])
    assert s.offline.rule_prior == (0.9, 0.7, 16.0, 1.0) and s.online.rule_prior == (1.0, 0.8, 4.0, 2.0, 20.0)
    assert learner_settings("project").offline.rule_prior is None
    assert learner_settings("paper").online.rule_prior is None
    with pytest.raises(UserError, match="rule_prior"):
        learner_settings("project", offline=["rule_prior=[0.9,0.7,16]"])
    with pytest.raises(UserError, match="scorer"):
        learner_settings("project", offline=["rule_prior=[0.9,0.7,16,1]", "actor_head=plain"])
    with pytest.raises(ValueError, match="scorer head"):
        Actor(D2, N + 1, (16, 16), head="plain", rule_prior=PRIOR)
