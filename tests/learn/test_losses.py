"""Loss functions of the learner on tiny hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from o2o.core.errors import UserError
from o2o.learn.nets import Actor, QNet, masked_log_softmax, masked_logsumexp
from o2o.learn.offline import (
    DiscreteSACCQL,
    actor_objective,
    cql_regularizer,
    normalize_rewards,
    q_loss,
    soft_update,
    soft_value,
    td_target,
)
from o2o.learn.online import gae, ppo_clip_objective
from o2o.learn.settings import OfflineSettings, OnlineSettings, with_overrides


def t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


def test_masked_softmax_and_logsumexp():
    logits = t([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    mask = torch.tensor([[True, False, True], [True, True, False]])
    p = masked_log_softmax(logits, mask).exp()
    e1, e3 = math.exp(1), math.exp(3)
    assert p[0].tolist() == pytest.approx([e1 / (e1 + e3), 0.0, e3 / (e1 + e3)], abs=1e-7)
    assert p[1].tolist() == pytest.approx([0.5, 0.5, 0.0], abs=1e-7)
    assert p[0, 1].item() == 0.0  # exactly zero, so p log p adds nothing
    lse = masked_logsumexp(logits, mask)
    assert lse.tolist() == pytest.approx([math.log(e1 + e3), math.log(2.0)], abs=1e-6)


def test_cql_regularizer_over_available_actions():
    q = t([[1.0, 2.0, 10.0], [0.5, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, True]])
    act = torch.tensor([0, 0])
    reg = cql_regularizer(q, act, mask)
    # row 0: logsumexp over {0, 1} (the masked 10.0 does not count) minus Q(o, a=0)
    assert reg[0].item() == pytest.approx(math.log(math.e + math.e ** 2) - 1.0, abs=1e-6)
    assert reg[1].item() == pytest.approx(math.log(math.exp(0.5) + 1.0) - 0.5, abs=1e-6)
    # A data action outside the mask (a heuristic sending to an overloaded node) is counted
    # as available: logsumexp over mask | {a}, so R >= 0.
    reg_out = cql_regularizer(q, torch.tensor([2, 1]), mask)
    assert reg_out[0].item() == pytest.approx(math.log(math.e + math.e ** 2 + math.e ** 10) - 10.0, abs=1e-5)
    assert reg_out[1].item() == pytest.approx(math.log(math.exp(0.5) + 2.0) - 0.0, abs=1e-6)
    assert (reg_out >= 0).all()


def test_q_loss_adds_weighted_cql_term():
    q = t([[1.0, 2.0, 10.0]])
    mask = torch.tensor([[True, True, False]])
    act, y = torch.tensor([1]), t([1.5])
    loss, reg = q_loss(q, act, y, mask, cql_weight=0.5)
    expected_reg = math.log(math.e + math.e ** 2) - 2.0
    assert reg.item() == pytest.approx(expected_reg, abs=1e-6)
    assert loss.item() == pytest.approx((2.0 - 1.5) ** 2 + 0.5 * expected_reg, abs=1e-6)


def test_soft_value_target_and_actor_objective():
    log_pi = masked_log_softmax(t([[0.0, math.log(3.0), 7.0]]), torch.tensor([[True, True, False]]))
    q_min = t([[1.0, 2.0, 100.0]])
    alpha = 0.1
    # pi = (1/4, 3/4, 0): V = sum pi (q - alpha log pi)
    v = 0.25 * (1.0 - alpha * math.log(0.25)) + 0.75 * (2.0 - alpha * math.log(0.75))
    assert soft_value(log_pi, q_min, alpha).item() == pytest.approx(v, abs=1e-6)
    assert actor_objective(log_pi, q_min, alpha).item() == pytest.approx(v, abs=1e-6)
    y = td_target(t([1.0, 1.0]), torch.tensor([False, True]), t([v, v]), 0.9)
    assert y.tolist() == pytest.approx([1.0 + 0.9 * v, 1.0], abs=1e-6)


def test_reward_normalisation_modes():
    r = np.array([1.0, 3.0, 5.0, 7.0], dtype=np.float32)
    z, stats = normalize_rewards(r, "standard")
    assert z.mean() == pytest.approx(0.0, abs=1e-6) and z.std() == pytest.approx(1.0, abs=1e-6)
    assert stats == {"mean": 4.0, "std": pytest.approx(float(np.std(r)))}
    z, _ = normalize_rewards(r, "scale")
    assert z.std() == pytest.approx(1.0, abs=1e-6) and z.mean() > 0
    z, _ = normalize_rewards(r, "none")
    assert z.tolist() == r.tolist()


def test_gae_matches_direct_computation():
    rng = np.random.default_rng(0)
    T, gamma, lam = 7, 0.9, 0.8
    r, v = rng.normal(size=(T, 3)), rng.normal(size=(T, 3))
    next_v = np.concatenate([v[1:], np.zeros((1, 3))])
    term = np.zeros((T, 3), bool)
    term[-1] = True
    adv, ret = gae(r, v, next_v, term, gamma, lam)
    # Direct: A_t = sum_k (gamma lambda)^k delta_{t+k}, delta_t = r_t + gamma V_{t+1} - V_t.
    delta = r + gamma * next_v * (~term) - v
    for t_ in range(T):
        direct = sum((gamma * lam) ** k * delta[t_ + k] for k in range(T - t_))
        assert adv[t_] == pytest.approx(direct)
    assert ret == pytest.approx(adv + v)
    # With lambda = 1 the target is the discounted Monte-Carlo return.
    adv1, ret1 = gae(r, v, next_v, term, gamma, 1.0)
    mc = [sum(gamma ** k * r[t_ + k] for k in range(T - t_)) for t_ in range(T)]
    assert ret1 == pytest.approx(np.array(mc))


def test_ppo_clip_objective_hand_cases():
    old = torch.log(t([0.5, 0.5, 0.5, 0.5]))
    new = torch.log(t([0.8, 0.8, 0.3, 0.3]))   # ratios 1.6, 1.6, 0.6, 0.6
    adv = t([1.0, -1.0, 1.0, -1.0])
    # eps 0.2: min(1.6*1, 1.2*1)=1.2; min(-1.6, -1.2)=-1.6; min(0.6, 0.8)=0.6; min(-0.6, -0.8)=-0.8
    val = ppo_clip_objective(new, old, adv, 0.2)
    assert val.item() == pytest.approx((1.2 - 1.6 + 0.6 - 0.8) / 4, abs=1e-6)
    # Inside the clip range the objective is the plain ratio times the advantage.
    assert ppo_clip_objective(torch.log(t([0.55])), torch.log(t([0.5])), t([2.0]), 0.2).item() \
        == pytest.approx(1.1 * 2.0, abs=1e-6)


def test_targets_start_as_copies_and_track_at_rate_tau():
    algo = DiscreteSACCQL(OfflineSettings(tau=0.25), obs_dim=12, n_actions=3, seed=0)
    for a, b in zip(algo.q.parameters(), algo.q_target.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    # The two Q networks are different initialisations, each target tracks its own (the
    # members of one stacked module; soft_update works member by member, elementwise).
    assert not torch.equal(algo.q.qnet(0).net.linears[0].weight, algo.q.qnet(1).net.linears[0].weight)
    src, tgt = QNet(4, 2, (3,)), QNet(4, 2, (3,))
    before = [p.clone() for p in tgt.parameters()]
    soft_update(tgt, src, 0.25)
    for b, s, a in zip(before, src.parameters(), tgt.parameters()):
        assert torch.allclose(a, 0.75 * b + 0.25 * s)


def test_paper_defaults_and_overrides():
    s = OfflineSettings()
    assert (s.lr, s.gamma, s.tau, s.batch_size, s.alpha, s.cql_weight, s.hidden) == \
        (3e-4, 0.99, 0.0005, 128, 0.05, 0.1, (64, 64))
    o = OnlineSettings()
    assert (o.lr, o.gamma, o.gae_lambda, o.clip, o.epochs) == (3e-4, 0.99, 0.95, 0.2, 4)
    assert with_overrides(s, ["cql_weight=0.5", "hidden=[32, 32]"]).cql_weight == 0.5
    with pytest.raises(UserError, match="unknown hyper-parameter 'cql'"):
        with_overrides(s, ["cql=1"])
    with pytest.raises(UserError, match="key=value"):
        with_overrides(s, ["cql_weight"])
    with pytest.raises(UserError, match="tau"):
        with_overrides(s, ["tau=2"])


def test_self_head_adds_to_own_action_only():
    actor = Actor(obs_dim=12, n_actions=3, hidden=(4,), self_head=True)
    obs = torch.zeros(2, 12)
    obs[0, 0] = 1.0  # node 0
    obs[1, 1] = 1.0  # node 1
    out = actor.net(obs)
    logits = actor.logits(obs)
    assert torch.allclose(logits[0], out[0, :3] + torch.tensor([1.0, 0.0, 0.0]) * out[0, 3])
    assert torch.allclose(logits[1], out[1, :3] + torch.tensor([0.0, 1.0, 0.0]) * out[1, 3])
