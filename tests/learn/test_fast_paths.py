"""The fast paths of the learner against the plain code they replace, on fixed inputs: the
advantage-weighted offline step, the PPO update, the fused Adam step from a gradient list, and
minibatches prepared many at a time. Each must give the same numbers, to the bit."""

import copy

import numpy as np
import pytest
import torch

from o2o.core.decpomdp import OBS_LAYOUT_V2, obs_dim
from o2o.learn.nets import Actor, AdamStep, Critic, adam
from o2o.learn.offline import AdvantageWeighted, DiscreteSACCQL, soft_update, td_target
from o2o.learn.online import (
    PPOUpdate,
    critic_inputs,
    gae,
    normalize_batch_rewards,
    ppo_clip_objective,
)
from o2o.learn.settings import OfflineSettings, OnlineSettings
from tests.helpers import random_ppo_batch

from .test_offline_speed import random_batch

N = 4


def awr_reference_step(actor, critic, critic_target, opt, b, s: OfflineSettings):
    """The advantage-weighted step as written before the fast path: .backward(), Adam.step()."""
    obs, act, mask = b["observations"], b["actions"], b["action_masks"]
    with torch.no_grad():
        y = td_target(b["rewards"], b["terminals"], critic_target(b["next_observations"]), s.gamma)
    v = critic(obs)
    v_loss = ((v - y) ** 2).mean()
    rows = torch.nonzero(~mask[:, -1] & mask.gather(1, act[:, None]).squeeze(1)).squeeze(1)
    log_pi, pi = actor.policy(obs[rows], mask[rows])
    logp_data = log_pi.gather(1, act[rows][:, None]).squeeze(1)
    with torch.no_grad():
        adv = y[rows] - v[rows]
        weight = (torch.ones_like(adv) if s.algorithm == "bc"
                  else (adv / s.awr_temperature).exp().clamp(max=s.awr_max_weight))
    actor_loss = -(weight * logp_data).sum() / max(rows.numel(), 1)
    with torch.no_grad():
        entropy = -(pi * log_pi).sum(-1).mean()
    opt.zero_grad(set_to_none=True)
    (v_loss + actor_loss).backward()
    opt.step()
    soft_update(critic_target, critic, s.tau)
    return {"v_loss": v_loss.item(), "actor_loss": actor_loss.item(), "entropy": entropy.item(),
            "weight": weight.mean().item()}


@pytest.mark.parametrize("head,algorithm", [("plain", "awr"), ("scorer", "awr"), ("plain", "bc")])
def test_awr_step_equals_the_plain_step(head, algorithm):
    torch.set_num_threads(1)
    s = OfflineSettings(algorithm=algorithm, actor_head=head, tau=0.1, lr=1e-3, hidden=(8, 8))
    d = obs_dim(N, OBS_LAYOUT_V2) if head == "scorer" else obs_dim(N)
    fast = AdvantageWeighted(s, d, N + 1, seed=2)
    actor, critic, target = (copy.deepcopy(fast.actor), copy.deepcopy(fast.critic),
                             copy.deepcopy(fast.critic_target))
    opt = adam([*critic.parameters(), *actor.parameters()], s.lr)
    rng = np.random.default_rng(1)
    for _ in range(4):
        b = random_batch(rng, 48, d, N + 1)
        want = awr_reference_step(actor, critic, target, opt, b, s)
        got = fast.update(b)
        for k, v in want.items():
            assert got[k] == v, k
    for mine, theirs in ((fast.actor, actor), (fast.critic, critic), (fast.critic_target, target)):
        for p, r in zip(mine.parameters(), theirs.parameters()):
            assert torch.equal(p, r)


@pytest.mark.parametrize("cls", [DiscreteSACCQL, AdvantageWeighted])
def test_minibatches_prepared_together_equal_one_at_a_time(cls):
    d = obs_dim(N)
    algo = cls(OfflineSettings(batch_size=16), d, N + 1, seed=0)
    chunk = random_batch(np.random.default_rng(3), 5 * 16, d, N + 1)
    together = algo.prepare(chunk, 5)
    for j in range(5):
        alone = algo.prepare({k: v[j * 16:(j + 1) * 16] for k, v in chunk.items()}, 1)[0]
        assert together[j].keys() == alone.keys()
        for k, v in alone.items():
            assert (torch.equal(together[j][k], v) if isinstance(v, torch.Tensor) else together[j][k] == v), k


def test_adam_step_from_gradients_equals_adam_step():
    torch.manual_seed(0)
    nets = [torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)]
    nets[1].load_state_dict(nets[0].state_dict())
    plain, fast = adam(nets[0].parameters(), 1e-2), AdamStep(adam(nets[1].parameters(), 1e-2))
    for _ in range(5):
        x = torch.rand(7, 5)
        plain.zero_grad(set_to_none=True)
        (nets[0](x) ** 2).sum().backward()
        plain.step()
        fast.step(torch.autograd.grad((nets[1](x) ** 2).sum(), fast.params))
    for p, r in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(p, r)


def ppo_reference_update(s, actor, critic, actor_opt, critic_opt, rng, buf):
    """PPOUpdate.update as written before the fast path: two backward passes, clip_grad_norm_."""
    T, B, n = buf["act"].shape
    rewards = normalize_batch_rewards(buf["rewards"], s.reward_norm, None)
    rewards = np.broadcast_to(rewards[:, :, None], (T, B, n))
    values = buf["value"].astype(np.float64)
    next_values = np.concatenate([values[1:], np.zeros_like(values[:1])])
    terminals = np.zeros((T, 1, 1), dtype=bool)
    terminals[-1] = True
    adv, returns = gae(rewards, values, next_values, np.broadcast_to(terminals, (T, B, n)), s.gamma, s.gae_lambda)
    flat = lambda x: torch.from_numpy(np.ascontiguousarray(x).reshape(T * B * n, *x.shape[3:]))  # noqa: E731
    obs, mask, act = flat(buf["obs"]), flat(buf["mask"]), flat(buf["act"])
    critic_obs = flat(critic_inputs(buf["obs"], "own"))
    old_logp, adv_t, ret_t = flat(buf["logp"]), flat(adv.astype(np.float32)), flat(returns.astype(np.float32))
    decision = torch.nonzero(~mask[:, -1]).squeeze(1)
    n_mb = max(1, -(-decision.numel() // s.minibatch_size))
    stats = {}
    for _ in range(s.epochs):
        dec_perm = decision[torch.from_numpy(rng.permutation(decision.numel()))]
        all_perm = torch.from_numpy(rng.permutation(T * B * n))
        for dec_idx, all_idx in zip(dec_perm.tensor_split(n_mb), all_perm.tensor_split(n_mb)):
            log_pi, pi = actor.policy(obs[dec_idx], mask[dec_idx])
            new_logp = log_pi.gather(1, act[dec_idx][:, None]).squeeze(1)
            a = adv_t[dec_idx]
            a = (a - a.mean()) / (a.std() + 1e-8)
            objective = ppo_clip_objective(new_logp, old_logp[dec_idx], a, s.clip)
            entropy = -(pi * log_pi).sum(-1).mean()
            actor_opt.zero_grad(set_to_none=True)
            (-(objective + s.entropy_coef * entropy)).backward()
            torch.nn.utils.clip_grad_norm_(actor.parameters(), s.max_grad_norm)
            actor_opt.step()
            v_loss = ((critic(critic_obs[all_idx]) - ret_t[all_idx]) ** 2).mean()
            critic_opt.zero_grad(set_to_none=True)
            v_loss.backward()
            torch.nn.utils.clip_grad_norm_(critic.parameters(), s.max_grad_norm)
            critic_opt.step()
            for k, v in (("ppo_objective", objective), ("v_loss", v_loss), ("entropy", entropy)):
                stats[k] = stats.get(k, 0.0) + v.item()
    return stats


def test_ppo_update_equals_the_plain_update():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    s = OnlineSettings(hidden=(8, 8), minibatch_size=16, epochs=2, entropy_coef=0.01, max_grad_norm=0.05)
    d, T, B = obs_dim(N), 6, 3
    actor, critic = Actor(d, N + 1, s.hidden), Critic(d, s.hidden)
    actor2, critic2 = copy.deepcopy(actor), copy.deepcopy(critic)
    buf = random_ppo_batch(N, d, seed=5, T=T, B=B)
    has = ~buf["mask"][..., -1]
    fast = PPOUpdate(s, actor, critic, np.random.default_rng(9))
    got = fast.update(buf)
    want = ppo_reference_update(s, actor2, critic2, adam(actor2.parameters(), s.lr), adam(critic2.parameters(), s.lr),
                                np.random.default_rng(9), buf)
    steps = s.epochs * max(1, -(-int(has.sum()) // s.minibatch_size))
    for k, v in want.items():
        assert got[k] == pytest.approx(v / steps, rel=1e-12), k
    for mine, theirs in ((actor, actor2), (critic, critic2)):
        for p, r in zip(mine.parameters(), theirs.parameters()):
            assert torch.equal(p, r)
