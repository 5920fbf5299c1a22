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

from o2o.core.decpomdp import OBS_LAYOUT_V2, central_critic_input, critic_dim
from o2o.core.errors import UserError
from o2o.core.progress import progress_bar
from o2o.learn.nets import Actor, Critic, TwinQ, adam, masked_logsumexp
from o2o.learn.policy import Policy
from o2o.learn.settings import OFFLINE_STEPS, OfflineSettings
from o2o.learn.tracking import Tracker
from o2o.logs.dataset import check_dataset, dataset_obs_layout, dataset_reward_credit

# The data-set arrays one step of Algorithm 1 reads.
TRAINING_ARRAYS = ("observations", "actions", "rewards", "next_observations", "terminals",
                   "action_masks", "next_action_masks")

# ----------------------------------------------------------------------------- loss functions


def soft_value(log_pi: torch.Tensor, q_min: torch.Tensor, alpha: float,
               pi: torch.Tensor | None = None) -> torch.Tensor:
    """pi^T (q_min - alpha log pi) per row. ``log_pi`` comes from a masked log-softmax, so a
    masked action has pi = 0 exactly and adds nothing. ``pi``: the probabilities, when the
    caller has them already (``Actor.policy``)."""
    pi = log_pi.exp() if pi is None else pi
    return (pi * (q_min - alpha * log_pi)).sum(-1)


def td_target(rewards: torch.Tensor, terminals: torch.Tensor, next_value: torch.Tensor,
              gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - terminal) V(o')."""
    return rewards + gamma * (1.0 - terminals.float()) * next_value


def _at_action(q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q(o, a) per row; ``q`` is (..., M, A) (leading dims: e.g. the two Q networks)."""
    return q.gather(-1, actions.expand(q.shape[:-1]).unsqueeze(-1)).squeeze(-1)


def cql_regularizer(q: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """R(o, a) = logsumexp_{a' in mask | {a}} Q(o, a') - Q(o, a), per row (CQL, paper eq. 10).
    ``q`` is (M, A), or (K, M, A) for K Q networks at once."""
    available = mask | torch.nn.functional.one_hot(actions, q.shape[-1]).bool()
    return masked_logsumexp(q, available) - _at_action(q, actions)


def q_loss(q: torch.Tensor, actions: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
           cql_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 10 for one Q network: mean (Q(o,a) - y)^2 + lambda_c mean R(o,a). Returns (loss, mean R);
    for ``q`` of shape (K, M, A), one loss and one mean R per network, (K,)."""
    reg = cql_regularizer(q, actions, mask).mean(-1)
    return ((_at_action(q, actions) - y) ** 2).mean(-1) + cql_weight * reg, reg


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


class OfflineLearner:
    """What the offline algorithms share: the actor and the critic V_omega, the seeded
    minibatch draws, the training loop with its records and evaluations (``fit``)."""

    prefetch = 64

    def __init__(self, settings: OfflineSettings, obs_dim: int, n_actions: int, seed: int = 0,
                 critic_dim: int | None = None):
        self.s = settings
        self.obs_dim, self.n_actions = obs_dim, n_actions
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x0FF1]))
        self.actor = Actor(obs_dim, n_actions, settings.hidden, head=settings.actor_head)
        self.critic = Critic(critic_dim or obs_dim, settings.hidden)
        self.steps_done = 0

    def update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def minibatches(self, t: dict[str, torch.Tensor], m: int):
        """Minibatches of ``batch_size`` rows drawn uniformly (with replacement) by the seeded
        generator, gathered ``prefetch`` steps at a time."""
        size = self.s.batch_size
        while True:
            idx = torch.from_numpy(self.rng.integers(0, m, size=self.prefetch * size))
            chunk = {k: v.index_select(0, idx) for k, v in t.items()}
            for k in range(self.prefetch):
                yield {name: v[k * size:(k + 1) * size] for name, v in chunk.items()}

    def fit(self, dataset: dict[str, np.ndarray], steps: int,
            callback: Callable[[int, Actor], dict[str, Any] | None] | None = None,
            tracker: Tracker | None = None, log_every: int = 500, show_progress: bool = True) -> OfflineResult:
        """Train for ``steps`` minibatches. Every ``settings.eval_every`` steps (and at the end)
        ``callback(step, actor)`` may return metrics (e.g. a success rate) that are logged."""
        start = time.perf_counter()
        data = check_dataset(dataset)
        m = data["actions"].shape[0]
        if m > self.s.buffer_size:  # a FIFO buffer keeps the most recent rows
            data = {k: (v[-self.s.buffer_size:] if np.ndim(v) else v) for k, v in data.items()}
            m = self.s.buffer_size
        rewards, stats = normalize_rewards(data["rewards"], self.s.reward_norm)
        t = {k: torch.from_numpy(np.ascontiguousarray(data[k])) for k in TRAINING_ARRAYS}
        t["rewards"] = torch.from_numpy(rewards)
        if self.s.critic_input == "central":
            t.update(central_critic_arrays(data))
        history: list[dict[str, Any]] = []
        tracker = tracker or Tracker()
        sums: dict[str, float] = {}
        count = 0
        last_eval: dict[str, Any] = {}
        batches = self.minibatches(t, m)
        with progress_bar(total=steps, desc="offline", unit="step", disable=not show_progress) as bar:
            for step in range(1, steps + 1):
                metrics = self.update(next(batches))
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
                    post = {"v": f"{record['v_loss']:.3f}", "H": f"{record['entropy']:.2f}"}
                    if "success_rate" in last_eval:
                        post["success"] = f"{last_eval['success_rate']:.3f}"
                    bar.set_postfix(post)
                bar.update(1)
        policy = Policy(self.actor, self.critic, dataset_reward_credit(dataset), stats)
        return OfflineResult(policy, history, steps, time.perf_counter() - start, self.s)



def central_critic_arrays(data: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The centralized critic's input of every row (own observation + the slot's global state,
    ``o2o.core.decpomdp.central_critic_input``), for o and o'. Needs whole slots in the data
    set's order (episode, slot, node)."""
    n = data["action_masks"].shape[1] - 1
    m, d = data["observations"].shape
    if m % n or not np.array_equal(data["node_ids"], np.tile(np.arange(n), m // n)):
        raise UserError("the centralized critic needs the data set's rows in whole slots, nodes "
                        "0..N-1 in order, as 'o2o dataset export' writes them")
    out = {}
    for name, key in (("observations", "critic_observations"),
                      ("next_observations", "next_critic_observations")):
        out[key] = torch.from_numpy(central_critic_input(data[name].reshape(m // n, n, d)).reshape(m, -1))
    return out


class DiscreteSACCQL(OfflineLearner):
    """Algorithm 1. ``DiscreteSACCQL(settings, obs_dim, n_actions, seed).fit(dataset, steps)``.

    One step evaluates the equations above exactly, arranged for speed on one CPU thread:

    * Q_phi1 and Q_phi2 (and their targets) are one batched module (``TwinQ``): one matrix
      product per layer for both;
    * lines 3-5 share one backward pass and one Adam step. The three losses depend on disjoint
      parameters (the actor's objective uses the Qs detached, y is computed without gradient),
      and Adam's state is per parameter, so this is the same update as three optimizers;
    * the actor runs only on rows with a task: without one, only the no-task action is
      available, pi is one-hot there and the soft value is min_k Q(o, N) exactly, with no
      gradient to the actor;
    * minibatches are gathered ``prefetch`` steps at a time.

    ``tests/test_learn_offline_speed.py`` checks the losses and the updated weights against a
    plain implementation of the equations with separate networks and optimizers."""

    def __init__(self, settings: OfflineSettings, obs_dim: int, n_actions: int, seed: int = 0,
                 critic_dim: int | None = None):
        super().__init__(settings, obs_dim, n_actions, seed, critic_dim)
        h = settings.hidden
        # The Q networks read the observation (plain, or with the self head); a scorer actor
        # follows them through eq. 11 all the same.
        self.q = TwinQ(obs_dim, n_actions, h, settings.actor_head == "self")
        # Targets start as exact copies (Alg. 1: Qbar_k <- Q_k).
        self.q_target = copy.deepcopy(self.q)
        for p in self.q_target.parameters():
            p.requires_grad_(False)
        self.optimizer = adam([*self.critic.parameters(), *self.actor.parameters(),
                               *self.q.parameters()], settings.lr)
        self.steps_done = 0

    def losses(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The losses of Algorithm 1, lines 3-5, on minibatch ``b`` (tensors with gradient)."""
        s = self.s
        obs, act, mask = b["observations"], b["actions"], b["action_masks"]
        m = act.shape[0]
        with torch.no_grad():
            next_mask = b["next_action_masks"]
            next_q = self.q_target(b["next_observations"])
            next_q_min = torch.minimum(next_q[0], next_q[1])
            next_value = next_q_min[:, -1].clone()  # no task at o': pi(o') is one-hot on N
            rows = torch.nonzero(~next_mask[:, -1]).squeeze(1)
            if rows.numel():
                next_log_pi, next_pi = self.actor.policy(b["next_observations"][rows], next_mask[rows])
                next_value[rows] = soft_value(next_log_pi, next_q_min[rows], s.alpha, next_pi)
            y = td_target(b["rewards"], b["terminals"], next_value, s.gamma)

        v_loss = ((self.critic(b.get("critic_observations", obs)) - y) ** 2).mean()  # line 3, eq. 12

        q = self.q(obs)
        q_min = torch.minimum(q[0], q[1]).detach()
        task = ~mask[:, -1]
        rows = torch.nonzero(task).squeeze(1)
        log_pi, pi = self.actor.policy(obs[rows], mask[rows])
        objective = (soft_value(log_pi, q_min[rows], s.alpha, pi).sum()        # line 4, eq. 11
                     + q_min[~task, -1].sum()) / m

        q_losses, regs = q_loss(q, act, y, mask, s.cql_weight)                  # line 5, eq. 10
        with torch.no_grad():
            entropy = -(pi * log_pi).sum() / m
            data_prob = (pi.gather(1, act[rows][:, None]).sum() + (m - rows.numel())) / m
            q_data = q_min.gather(1, act[:, None]).mean()
        return {"v_loss": v_loss, "actor_objective": objective, "q1_loss": q_losses[0],
                "q2_loss": q_losses[1], "cql1": regs[0], "cql2": regs[1], "entropy": entropy,
                "data_action_prob": data_prob, "q_mean": q_data}

    def update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        """One step of Algorithm 1 (lines 2-7) on minibatch ``b``."""
        loss = self.losses(b)
        self.optimizer.zero_grad(set_to_none=True)
        (loss["v_loss"] - loss["actor_objective"] + loss["q1_loss"] + loss["q2_loss"]).backward()
        self.optimizer.step()
        soft_update(self.q_target, self.q, self.s.tau)                         # lines 6-7
        self.steps_done += 1
        v = {k: float(t.detach()) for k, t in loss.items()}
        return {"q_loss": 0.5 * (v["q1_loss"] + v["q2_loss"]), "cql": 0.5 * (v["cql1"] + v["cql2"]),
                "v_loss": v["v_loss"], "actor_objective": v["actor_objective"],
                "entropy": v["entropy"], "data_action_prob": v["data_action_prob"],
                "q_mean": v["q_mean"]}

class AdvantageWeighted(OfflineLearner):
    """Advantage-weighted regression from the logs (AWAC / IQL style; ``algorithm="awr"``), and
    behaviour cloning (``algorithm="bc"``, every weight 1), the project's alternatives to
    Algorithm 1:

    * V_omega by TD on the data: mean (V(o) - y)^2, y = r + gamma (1 - terminal) Vbar(o'),
      Vbar a target copy tracking V at rate tau (eq. 12 with the behaviour's value);
    * the actor by max mean_{task rows} w log pi(a|o), w = min(exp(A / beta), w_max),
      A = y - V(o): the logged actions that did better than the logging heuristic's average are
      imitated more, so the actor improves on the heuristic without leaving its support (no
      action the logs never took gets weight). Rows whose logged action the mask forbids (RATC
      and ESF may send to an overloaded node) are left out of the actor's loss.
    """

    def __init__(self, settings: OfflineSettings, obs_dim: int, n_actions: int, seed: int = 0,
                 critic_dim: int | None = None):
        super().__init__(settings, obs_dim, n_actions, seed, critic_dim)
        self.critic_target = copy.deepcopy(self.critic)
        for p in self.critic_target.parameters():
            p.requires_grad_(False)
        self.optimizer = adam([*self.critic.parameters(), *self.actor.parameters()], settings.lr)

    def losses(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        s = self.s
        obs, act, mask = b["observations"], b["actions"], b["action_masks"]
        v_in = b.get("critic_observations", obs)
        with torch.no_grad():
            next_v = self.critic_target(b.get("next_critic_observations", b["next_observations"]))
            y = td_target(b["rewards"], b["terminals"], next_v, s.gamma)
        v = self.critic(v_in)
        v_loss = ((v - y) ** 2).mean()
        rows = torch.nonzero(~mask[:, -1] & mask.gather(1, act[:, None]).squeeze(1)).squeeze(1)
        log_pi, pi = self.actor.policy(obs[rows], mask[rows])
        logp_data = log_pi.gather(1, act[rows][:, None]).squeeze(1)
        with torch.no_grad():
            adv = y[rows] - v[rows]
            weight = (torch.ones_like(adv) if s.algorithm == "bc"
                      else (adv / s.awr_temperature).exp().clamp(max=s.awr_max_weight))
        actor_loss = -(weight * logp_data).sum() / max(rows.numel(), 1)
        with torch.no_grad():
            entropy = -(pi * log_pi).sum(-1).mean()
            data_prob = logp_data.exp().mean()
        return {"v_loss": v_loss, "actor_loss": actor_loss, "entropy": entropy,
                "data_action_prob": data_prob, "advantage": adv.mean(), "weight": weight.mean()}

    def update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        loss = self.losses(b)
        self.optimizer.zero_grad(set_to_none=True)
        (loss["v_loss"] + loss["actor_loss"]).backward()
        self.optimizer.step()
        soft_update(self.critic_target, self.critic, self.s.tau)
        self.steps_done += 1
        return {k: float(v.detach()) for k, v in loss.items()}


def train_offline(dataset: dict[str, np.ndarray], settings: OfflineSettings | None = None, seed: int = 0,
                  steps: int = OFFLINE_STEPS, callback: Callable[[int, Actor], dict[str, Any] | None] | None = None,
                  tracker: Tracker | None = None, show_progress: bool = True) -> OfflineResult:
    """Algorithm 1 on ``dataset`` (layout of ``o2o.logs.dataset``): the offline actor and critic.

    Same data, settings, seed and steps give the same weights (one torch thread)."""
    settings = settings or OfflineSettings()
    data = check_dataset(dataset)
    if settings.actor_head == "scorer" and dataset_obs_layout(data) != OBS_LAYOUT_V2:
        raise UserError(f"the scorer actor reads observation layout {OBS_LAYOUT_V2}, but the data "
                        f"set has {dataset_obs_layout(data)}: export it with --obs-layout "
                        f"{OBS_LAYOUT_V2}, or train with --set-hparam actor_head=plain")
    obs_dim_, n_actions = data["observations"].shape[1], data["action_masks"].shape[1]
    c_dim = critic_dim(n_actions - 1, dataset_obs_layout(data), settings.critic_input)
    cls = DiscreteSACCQL if settings.algorithm == "sac-cql" else AdvantageWeighted
    algo = cls(settings, obs_dim_, n_actions, seed, c_dim)
    return algo.fit(data, steps, callback=callback, tracker=tracker, show_progress=show_progress)
