"""Offline training of O2O-DRL (paper IV-C2, Algorithm 1): discrete SAC with the CQL regularizer
and an extra state-value critic V_omega, from a data set of logged transitions.

One step on a minibatch B (rows are (o_t^i, a_t^i, r_t, o_{t+1}^i) of every node; one model is
shared by all nodes):

* soft value of the next observation, with the current actor and the *target* Qs::

      V(o') = pi(o')^T (min_k Qbar_k(o') - alpha log pi(o'))                        (paper IV-C2)
      y     = r + gamma (1 - terminal) V(o')

* the critic V_omega towards the same target:   mean (V_omega(o) - y)^2               (eq. 12)
* the actor, maximizing the soft value of the current observation::

      J(theta) = mean pi(o)^T (min_k Q_k(o) - alpha log pi(o))                        (eq. 11)

  (the paper writes o_{t+1}; both are observations from the data, we use o_t as discrete SAC
  does);
* each Q network, with its own CQL term (CQL(H), [15])::

      L(phi_k) = mean (Q_k(o, a) - y)^2 + lambda_c mean R_k(o, a)                      (eq. 10)
      R_k(o, a) = logsumexp_{a' available} Q_k(o, a') - Q_k(o, a)

* targets: Qbar_k <- (1 - tau) Qbar_k + tau Q_k, each target tracking its own Q (Alg. 1 l. 7).

Masks. Every softmax over pi and every logsumexp is over the row's available actions. A
heuristic may take an action its own mask forbids (RATC may send to an overloaded node, since
it only probes two nodes); in the CQL logsumexp such a data action is counted as available
(the logsumexp runs over ``mask | {a}``), so R_k >= 0 always holds and Q_k(o, a) is still
fitted to y. The actor's softmax uses the mask alone: the policy never puts mass on an
overloaded peer, as the deployed actor cannot either.

Rewards are normalised once over the whole data set (Alg. 1, "Normalize the rewards"):
``standard`` (default) is (r - mean) / std over all rows. Every episode has the same T slots,
so subtracting a constant changes no ranking of policies; it only centres the values.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from o2o.core.progress import progress_bar
from o2o.learn.nets import Actor, Critic, QNet, masked_logsumexp
from o2o.learn.policy import Policy
from o2o.learn.settings import OFFLINE_STEPS, OfflineSettings
from o2o.learn.tracking import Tracker
from o2o.logs.dataset import check_dataset, dataset_reward_credit

# The data-set arrays one step of Algorithm 1 reads.
TRAINING_ARRAYS = ("observations", "actions", "rewards", "next_observations", "terminals",
                   "action_masks", "next_action_masks")

# ----------------------------------------------------------------------------- loss functions


def soft_value(log_pi: torch.Tensor, q_min: torch.Tensor, alpha: float) -> torch.Tensor:
    """pi^T (q_min - alpha log pi) per row. ``log_pi`` comes from a masked log-softmax, so a
    masked action has pi = 0 exactly and adds nothing."""
    pi = log_pi.exp()
    return (pi * (q_min - alpha * log_pi)).sum(-1)


def td_target(rewards: torch.Tensor, terminals: torch.Tensor, next_value: torch.Tensor,
              gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - terminal) V(o')."""
    return rewards + gamma * (1.0 - terminals.float()) * next_value


def cql_regularizer(q: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """R(o, a) = logsumexp_{a' in mask | {a}} Q(o, a') - Q(o, a), per row (CQL, paper eq. 10)."""
    available = mask.clone()
    available[torch.arange(q.shape[0]), actions] = True
    q_data = q.gather(1, actions[:, None]).squeeze(1)
    return masked_logsumexp(q, available) - q_data


def q_loss(q: torch.Tensor, actions: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
           cql_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 10 for one Q network: mean (Q(o,a) - y)^2 + lambda_c mean R(o,a). Returns (loss, mean R)."""
    q_data = q.gather(1, actions[:, None]).squeeze(1)
    reg = cql_regularizer(q, actions, mask).mean()
    return ((q_data - y) ** 2).mean() + cql_weight * reg, reg


def actor_objective(log_pi: torch.Tensor, q_min: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 11: the mean soft value pi^T (min Q - alpha log pi); to be maximised."""
    return soft_value(log_pi, q_min, alpha).mean()


def normalize_rewards(rewards: np.ndarray, mode: str) -> tuple[np.ndarray, dict[str, float]]:
    """Rewards normalised over the data set, and the statistics used (kept in the model)."""
    mean, std = float(rewards.mean()), float(rewards.std())
    std = std if std > 1e-8 else 1.0
    if mode == "standard":
        return ((rewards - mean) / std).astype(np.float32), {"mean": mean, "std": std}
    if mode == "scale":
        return (rewards / std).astype(np.float32), {"mean": 0.0, "std": std}
    return rewards.astype(np.float32), {"mean": 0.0, "std": 1.0}


def soft_update(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source (Alg. 1, line 7)."""
    with torch.no_grad():
        # lerp: t + tau (s - t) = (1 - tau) t + tau s, for all tensors at once.
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


# ----------------------------------------------------------------------------- algorithm


@dataclass
class OfflineResult:
    """What offline training outputs (Alg. 1): the policy (actor, critic, the data's reward
    credit and statistics), plus its record."""

    policy: Policy
    history: list[dict[str, Any]]
    steps: int
    seconds: float
    settings: OfflineSettings = field(default_factory=OfflineSettings)


class DiscreteSACCQL:
    """Algorithm 1. ``DiscreteSACCQL(settings, obs_dim, n_actions, seed).fit(dataset, steps)``."""

    def __init__(self, settings: OfflineSettings, obs_dim: int, n_actions: int, seed: int = 0):
        self.s = settings
        self.obs_dim, self.n_actions = obs_dim, n_actions
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x0FF1]))
        h = settings.hidden
        sh = settings.self_head
        self.actor = Actor(obs_dim, n_actions, h, sh)
        self.q1, self.q2 = QNet(obs_dim, n_actions, h, sh), QNet(obs_dim, n_actions, h, sh)
        # Targets start as exact copies (Alg. 1: Qbar_k <- Q_k).
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        for p in [*self.q1_target.parameters(), *self.q2_target.parameters()]:
            p.requires_grad_(False)
        self.critic = Critic(obs_dim, h)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=settings.lr, foreach=True)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=settings.lr, foreach=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=settings.lr, foreach=True)
        self.steps_done = 0

    def update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        """One step of Algorithm 1 (lines 2-7) on minibatch ``b``."""
        s = self.s
        obs, act, rew = b["observations"], b["actions"], b["rewards"]
        mask, next_mask = b["action_masks"], b["next_action_masks"]
        with torch.no_grad():
            next_log_pi = self.actor.log_probs(b["next_observations"], next_mask)
            next_q_min = torch.min(self.q1_target(b["next_observations"]),
                                   self.q2_target(b["next_observations"]))
            y = td_target(rew, b["terminals"], soft_value(next_log_pi, next_q_min, s.alpha), s.gamma)

        # Line 3: critic V_omega towards y (eq. 12).
        v_loss = ((self.critic(obs) - y) ** 2).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        self.critic_opt.step()

        # Line 4: actor by gradient ascent on the soft value (eq. 11); Qs fixed here.
        log_pi = self.actor.log_probs(obs, mask)
        q1, q2 = self.q1(obs), self.q2(obs)
        q_min = torch.min(q1, q2).detach()
        objective = actor_objective(log_pi, q_min, s.alpha)
        self.actor_opt.zero_grad(set_to_none=True)
        (-objective).backward()
        self.actor_opt.step()

        # Line 5: each Q network, TD error + lambda_c * its own CQL term (eq. 10).
        l1, reg1 = q_loss(q1, act, y, mask, s.cql_weight)
        l2, reg2 = q_loss(q2, act, y, mask, s.cql_weight)
        self.q_opt.zero_grad(set_to_none=True)
        (l1 + l2).backward()
        self.q_opt.step()

        # Lines 6-7: each target tracks its own Q.
        soft_update(self.q1_target, self.q1, s.tau)
        soft_update(self.q2_target, self.q2, s.tau)
        self.steps_done += 1
        with torch.no_grad():
            pi = log_pi.exp()
            entropy = -(pi * log_pi).sum(-1).mean()
            data_prob = pi.gather(1, act[:, None]).mean()
        return {"q_loss": 0.5 * float(l1.detach() + l2.detach()), "cql": 0.5 * float(reg1.detach() + reg2.detach()), "v_loss": float(v_loss.detach()),
                "actor_objective": float(objective.detach()), "entropy": float(entropy),
                "data_action_prob": float(data_prob), "q_mean": float(q_min.gather(1, act[:, None]).mean())}

    def fit(self, dataset: dict[str, np.ndarray], steps: int,
            callback: Callable[[int, Actor], dict[str, Any] | None] | None = None,
            tracker: Tracker | None = None, log_every: int = 500, show_progress: bool = True) -> OfflineResult:
        """Train for ``steps`` minibatches. Every ``settings.eval_every`` steps (and at the end)
        ``callback(step, actor)`` may return metrics (e.g. a success rate) that are logged."""
        start = time.perf_counter()
        data = check_dataset(dataset)
        m = data["actions"].shape[0]
        if m > self.s.buffer_size:  # a FIFO buffer keeps the most recent rows
            data = {k: data[k][-self.s.buffer_size:] for k in TRAINING_ARRAYS}
            m = self.s.buffer_size
        rewards, stats = normalize_rewards(data["rewards"], self.s.reward_norm)
        t = {k: torch.from_numpy(np.ascontiguousarray(data[k])) for k in TRAINING_ARRAYS}
        t["rewards"] = torch.from_numpy(rewards)
        history: list[dict[str, Any]] = []
        tracker = tracker or Tracker()
        sums: dict[str, float] = {}
        count = 0
        last_eval: dict[str, Any] = {}
        with progress_bar(total=steps, desc="offline", unit="step", disable=not show_progress) as bar:
            for step in range(1, steps + 1):
                idx = torch.from_numpy(self.rng.integers(0, m, size=self.s.batch_size))
                metrics = self.update({k: v[idx] for k, v in t.items()})
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                evaluate_now = callback is not None and (
                    (self.s.eval_every and step % self.s.eval_every == 0) or step == steps)
                if step % log_every == 0 or step == steps or evaluate_now:
                    record = {k: v / count for k, v in sums.items()}
                    sums, count = {}, 0
                    if evaluate_now:
                        last_eval = callback(step, self.actor) or {}
                        record.update(last_eval)
                    record["elapsed_s"] = time.perf_counter() - start
                    history.append(tracker.log("offline", step, record))
                    post = {"q": f"{record['q_loss']:.3f}", "H": f"{record['entropy']:.2f}"}
                    if "success_rate" in last_eval:
                        post["success"] = f"{last_eval['success_rate']:.3f}"
                    bar.set_postfix(post)
                bar.update(1)
        policy = Policy(self.actor, self.critic, dataset_reward_credit(dataset), stats)
        return OfflineResult(policy, history, steps, time.perf_counter() - start, self.s)


def train_offline(dataset: dict[str, np.ndarray], settings: OfflineSettings | None = None, seed: int = 0,
                  steps: int = OFFLINE_STEPS, callback: Callable[[int, Actor], dict[str, Any] | None] | None = None,
                  tracker: Tracker | None = None, show_progress: bool = True) -> OfflineResult:
    """Algorithm 1 on ``dataset`` (layout of ``o2o.logs.dataset``): the offline actor and critic.

    Same data, settings, seed and steps give the same weights (one torch thread)."""
    settings = settings or OfflineSettings()
    data = check_dataset(dataset)
    obs_dim, n_actions = data["observations"].shape[1], data["action_masks"].shape[1]
    algo = DiscreteSACCQL(settings, obs_dim, n_actions, seed)
    return algo.fit(data, steps, callback=callback, tracker=tracker, show_progress=show_progress)
