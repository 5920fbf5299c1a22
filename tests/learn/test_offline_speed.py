"""The fast step of Algorithm 1 (batched twin Q, one backward and one Adam step, the actor on
task rows only) against a plain implementation of the equations: same losses, same weights."""

import copy

import numpy as np
import pytest
import torch

from o2o.learn.nets import Actor, Critic, QNet
from o2o.learn.offline import (
    DiscreteSACCQL,
    actor_objective,
    q_loss,
    soft_update,
    soft_value,
    td_target,
)
from o2o.learn.settings import OfflineSettings


def reference_step(actor, critic, q1, q2, q1t, q2t, opts, b, s: OfflineSettings):
    """Algorithm 1, lines 2-7, exactly as the paper lists them: separate networks and
    optimizers, every row through every network."""
    actor_opt, critic_opt, q_opt = opts
    with torch.no_grad():
        next_log_pi = actor.log_probs(b["next_observations"], b["next_action_masks"])
        next_q = torch.min(q1t(b["next_observations"]), q2t(b["next_observations"]))
        y = td_target(b["rewards"], b["terminals"], soft_value(next_log_pi, next_q, s.alpha), s.gamma)
    v_loss = ((critic(b["observations"]) - y) ** 2).mean()
    critic_opt.zero_grad()
    v_loss.backward()
    critic_opt.step()
    log_pi = actor.log_probs(b["observations"], b["action_masks"])
    qa, qb = q1(b["observations"]), q2(b["observations"])
    objective = actor_objective(log_pi, torch.min(qa, qb).detach(), s.alpha)
    actor_opt.zero_grad()
    (-objective).backward()
    actor_opt.step()
    l1, r1 = q_loss(qa, b["actions"], y, b["action_masks"], s.cql_weight)
    l2, r2 = q_loss(qb, b["actions"], y, b["action_masks"], s.cql_weight)
    q_opt.zero_grad()
    (l1 + l2).backward()
    q_opt.step()
    soft_update(q1t, q1, s.tau)
    soft_update(q2t, q2, s.tau)
    pi = log_pi.exp()
    return {"v_loss": v_loss.item(), "actor_objective": objective.item(), "q1_loss": l1.item(),
            "q2_loss": l2.item(), "cql1": r1.item(), "cql2": r2.item(),
            "entropy": -(pi * log_pi).sum(-1).mean().item(),
            "data_action_prob": pi.gather(1, b["actions"][:, None]).mean().item()}


def random_batch(rng, m, d, a):
    obs = rng.random((m, d)).astype(np.float32)
    nxt = rng.random((m, d)).astype(np.float32)
    has, next_has = rng.random(m) < 0.5, rng.random(m) < 0.5
    mask = rng.random((m, a)) < 0.7
    mask[:, -1] = ~has
    mask[~has, :-1] = False
    mask[has, 0] = True
    next_mask = rng.random((m, a)) < 0.7
    next_mask[:, -1] = ~next_has
    next_mask[~next_has, :-1] = False
    next_mask[next_has, 1] = True
    act = np.where(has, rng.integers(0, a - 1, m), a - 1)  # some outside the mask, as RATC does
    return {"observations": torch.from_numpy(obs), "next_observations": torch.from_numpy(nxt),
            "actions": torch.from_numpy(act), "rewards": torch.from_numpy(rng.normal(size=m).astype(np.float32)),
            "terminals": torch.from_numpy(rng.random(m) < 0.1),
            "action_masks": torch.from_numpy(mask), "next_action_masks": torch.from_numpy(next_mask)}


@pytest.mark.parametrize("self_head", [False, True])
def test_fast_step_equals_the_equations_with_separate_networks(self_head):
    torch.set_num_threads(1)
    s = OfflineSettings(alpha=0.2, cql_weight=0.5, tau=0.1, lr=1e-3,
                        actor_head="self" if self_head else "plain")
    d, a = 18, 5  # N = 4
    fast = DiscreteSACCQL(s, d, a, seed=3)
    actor, critic = copy.deepcopy(fast.actor), copy.deepcopy(fast.critic)
    q1, q2 = fast.q.qnet(0), fast.q.qnet(1)
    q1t, q2t = fast.q_target.qnet(0), fast.q_target.qnet(1)
    opts = (torch.optim.Adam(actor.parameters(), lr=s.lr), torch.optim.Adam(critic.parameters(), lr=s.lr),
            torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=s.lr))
    rng = np.random.default_rng(0)
    for _ in range(3):
        b = random_batch(rng, 64, d, a)
        want = reference_step(actor, critic, q1, q2, q1t, q2t, opts, b, s)
        got = {k: float(v.detach()) for k, v in fast.losses(b).items()}
        for k, v in want.items():
            assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k
        fast.update(b)
    for mine, theirs in ((fast.actor, actor), (fast.critic, critic), (fast.q.qnet(0), q1),
                         (fast.q.qnet(1), q2), (fast.q_target.qnet(0), q1t), (fast.q_target.qnet(1), q2t)):
        for p, r in zip(mine.parameters(), theirs.parameters()):
            assert torch.allclose(p, r, atol=1e-6), type(mine).__name__


def test_stacked_members_are_the_separate_networks():
    q = QNet(6, 3, (5,))
    from o2o.learn.nets import TwinQ

    twin = TwinQ(6, 3, (5,))
    twin.load_qnets(q, QNet(6, 3, (5,)))
    x = torch.rand(7, 6)
    assert torch.allclose(twin(x)[0], q(x), atol=1e-6)
    assert isinstance(Actor(6, 3, (5,)), Actor) and isinstance(Critic(6, (5,)), Critic)
