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

from o2o.core.decpomdp import (
    OBS_LAYOUT_V2,
    OBS_LAYOUT_V3,
    central_critic_input,
    critic_dim,
    is_probed,
    is_v3,
    layout_probes,
)
from o2o.core.errors import UserError
from o2o.core.memory import keep_freed_memory
from o2o.core.progress import progress_bar
from o2o.learn.nets import (
    Actor,
    AdamStep,
    Critic,
    TwinQ,
    adam,
    masked_logits,
    masked_logsumexp,
)
from o2o.learn.policy import Policy
from o2o.learn.settings import OFFLINE_STEPS, OfflineSettings
from o2o.learn.tracking import Tracker
from o2o.logs.dataset import check_dataset, dataset_feature_scales, dataset_obs_layout, dataset_reward_credit

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


def soft_update(target: torch.nn.Module | list[torch.Tensor], source: torch.nn.Module | list[torch.Tensor],
                tau: float) -> None:
    """target <- (1 - tau) target + tau source (Alg. 1, line 7); modules or lists of their
    parameters."""
    with torch.no_grad():
        # lerp: t + tau (s - t) = (1 - tau) t + tau s, for all tensors at once.
        torch._foreach_lerp_(target if isinstance(target, list) else list(target.parameters()),
                             source if isinstance(source, list) else list(source.parameters()), tau)


def _rows(flags: torch.Tensor, k: int) -> tuple[torch.Tensor, list[int], tuple[torch.Tensor, ...]]:
    """``flags`` (k * size,) over k minibatches of ``size`` rows: the flagged rows of the chunk
    (``nonzero``), their number in each minibatch, and each minibatch's flagged rows as its own
    row indices (what ``nonzero`` of its own flags gives)."""
    size = flags.shape[0] // k
    where = torch.nonzero(flags).squeeze(1)
    counts = flags.view(k, size).sum(1).tolist()
    return where, counts, (where % size).split(counts)


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
        keep_freed_memory()
        self.s = settings
        self.obs_dim, self.n_actions = obs_dim, n_actions
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x0FF1]))
        self.actor = Actor(obs_dim, n_actions, settings.hidden, head=settings.actor_head,
                           rule_prior=settings.rule_prior)
        self.critic = Critic(critic_dim or obs_dim, settings.hidden, pooled=settings.critic_input == "pooled")
        self.steps_done = 0

    def update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def minibatches(self, t: dict[str, torch.Tensor], m: int):
        """Minibatches of ``batch_size`` rows drawn uniformly (with replacement) by the seeded
        generator, gathered ``prefetch`` steps at a time, with what a step reads from the data
        alone prepared for all of them at once (``prepare``)."""
        size = self.s.batch_size
        while True:
            idx = torch.from_numpy(self.rng.integers(0, m, size=self.prefetch * size))
            yield from self.prepare({k: v.index_select(0, idx) for k, v in t.items()}, self.prefetch)

    def prepare(self, chunk: dict[str, torch.Tensor], k: int) -> list[dict[str, torch.Tensor]]:
        """``k`` minibatches from the rows of ``chunk`` (k equal parts, in order)."""
        size = chunk["actions"].shape[0] // k
        parts = {name: v.split(size) for name, v in chunk.items()}
        return [{name: v[j] for name, v in parts.items()} for j in range(k)]

    def prepared(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``b`` as ``prepare`` gives it (a minibatch of the data-set arrays is prepared here)."""
        return b if "prepared" in b else self.prepare(b, 1)[0]

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
        self.adam = AdamStep(self.optimizer)
        self.q_params, self.target_params = list(self.q.parameters()), list(self.q_target.parameters())
        self.steps_done = 0

    def prepare(self, chunk: dict[str, torch.Tensor], k: int) -> list[dict[str, Any]]:
        """What lines 3-5 read from the data alone, for k minibatches at once: the rows with a
        task at o and at o' (and those rows of the observation and mask), the discount
        gamma (1 - terminal), the CQL logsumexp's action set ``mask | {a}``."""
        size = chunk["actions"].shape[0] // k
        act, mask, next_mask = chunk["actions"], chunk["action_masks"], chunk["next_action_masks"]
        task = ~mask[:, -1]
        where, counts, rows = _rows(task, k)
        x = self.actor.head_input(chunk["observations"].index_select(0, where)).split(counts)
        mask_r = mask.index_select(0, where).split(counts)
        act_r = act.index_select(0, where)[:, None].split(counts)
        _, _, no_task_rows = _rows(~task, k)
        next_where, next_counts, next_rows = _rows(~next_mask[:, -1], k)
        next_x = self.actor.head_input(chunk["next_observations"].index_select(0, next_where)).split(next_counts)
        next_mask_r = next_mask.index_select(0, next_where).split(next_counts)
        parts = {
            "observations": chunk["observations"], "next_observations": chunk["next_observations"],
            "rewards": chunk["rewards"], "discount": self.s.gamma * (1.0 - chunk["terminals"].float()),
            "critic_in": chunk.get("critic_observations", chunk["observations"]),
            "available": mask | torch.nn.functional.one_hot(act, self.n_actions).bool(),
        }
        parts = {name: v.split(size) for name, v in parts.items()}
        act_q = act.view(k, 1, size, 1).expand(k, 2, size, 1).unbind(0)
        act_col = act.view(k, size, 1).unbind(0)
        return [{**{name: v[j] for name, v in parts.items()}, "size": size, "act_q": act_q[j], "act_col": act_col[j],
                 "rows": rows[j], "x": x[j], "mask_r": mask_r[j], "act_r": act_r[j], "n_rows": counts[j],
                 "no_task_rows": no_task_rows[j], "next_rows": next_rows[j], "next_x": next_x[j],
                 "next_mask_r": next_mask_r[j], "n_next": next_counts[j]} for j in range(k)]

    def prepared(self, b: dict[str, Any]) -> dict[str, Any]:
        return b if "act_q" in b else self.prepare(b, 1)[0]

    def losses(self, b: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The losses of Algorithm 1, lines 3-5, on minibatch ``b`` (tensors with gradient)."""
        s, b = self.s, self.prepared(b)
        m = b["size"]
        with torch.no_grad():
            next_q = self.q_target(b["next_observations"])
            next_q_min = torch.minimum(next_q[0], next_q[1])
            next_value = next_q_min[:, -1].clone()  # no task at o': pi(o') is one-hot on N
            if b["n_next"]:
                rows = b["next_rows"]
                z = masked_logits(self.actor.logits_from(b["next_x"]), b["next_mask_r"])
                next_value[rows] = soft_value(torch.log_softmax(z, dim=-1), next_q_min[rows], s.alpha,
                                              torch.softmax(z, dim=-1))
            y = b["rewards"] + b["discount"] * next_value                   # td_target

        v_loss = ((self.critic(b["critic_in"]) - y) ** 2).mean()                # line 3, eq. 12

        q = self.q(b["observations"])
        with torch.no_grad():
            q_min = torch.minimum(q[0], q[1])
        z = masked_logits(self.actor.logits_from(b["x"]), b["mask_r"])
        log_pi, pi = torch.log_softmax(z, dim=-1), torch.softmax(z, dim=-1)
        objective = (soft_value(log_pi, q_min[b["rows"]], s.alpha, pi).sum()    # line 4, eq. 11
                     + q_min[b["no_task_rows"], -1].sum()) / m

        # line 5, eq. 10 (q_loss, with the data-only parts prepared)
        reg = (masked_logsumexp(q, b["available"]) - q.gather(-1, b["act_q"]).squeeze(-1)).mean(-1)
        q_losses = ((q.gather(-1, b["act_q"]).squeeze(-1) - y) ** 2).mean(-1) + s.cql_weight * reg
        with torch.no_grad():
            entropy = -(pi * log_pi).sum() / m
            data_prob = (pi.gather(1, b["act_r"]).sum() + (m - b["n_rows"])) / m
            q_data = q_min.gather(1, b["act_col"]).mean()
        return {"v_loss": v_loss, "actor_objective": objective, "q1_loss": q_losses[0],
                "q2_loss": q_losses[1], "cql1": reg[0], "cql2": reg[1], "entropy": entropy,
                "data_action_prob": data_prob, "q_mean": q_data}

    def update(self, b: dict[str, Any]) -> dict[str, float]:
        """One step of Algorithm 1 (lines 2-7) on minibatch ``b``."""
        loss = self.losses(b)
        total = loss["v_loss"] - loss["actor_objective"] + loss["q1_loss"] + loss["q2_loss"]
        self.adam.step(torch.autograd.grad(total, self.adam.params, allow_unused=True))
        soft_update(self.target_params, self.q_params, self.s.tau)            # lines 6-7
        self.steps_done += 1
        v = dict(zip(loss, torch.stack([t.detach() for t in loss.values()]).tolist()))
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
        # A teacher actor (policy distillation, Rusu et al. 2016): while set, the actor's loss is
        # the cross-entropy to the teacher's action probabilities on the same inputs instead of
        # the weighted log-likelihood of the logged action (the critic's loss is unchanged).
        self.teacher: Actor | None = None
        self.critic_target = copy.deepcopy(self.critic)
        for p in self.critic_target.parameters():
            p.requires_grad_(False)
        self.optimizer = adam([*self.critic.parameters(), *self.actor.parameters()], settings.lr)
        self.adam = AdamStep(self.optimizer)
        self.v_params, self.target_params = list(self.critic.parameters()), list(self.critic_target.parameters())

    def prepare(self, chunk: dict[str, torch.Tensor], k: int) -> list[dict[str, Any]]:
        """What a step reads from the data alone, for k minibatches at once: the discount
        gamma (1 - terminal), and the actor's rows (a task, and a logged action its mask allows)
        with their inputs, masks and actions."""
        size = chunk["actions"].shape[0] // k
        act, mask = chunk["actions"], chunk["action_masks"]
        where, counts, rows = _rows(~mask[:, -1] & mask.gather(1, act[:, None]).squeeze(1), k)
        x = self.actor.head_input(chunk["observations"].index_select(0, where)).split(counts)
        mask_r = mask.index_select(0, where).split(counts)
        act_r = act.index_select(0, where)[:, None].split(counts)
        parts = {
            "rewards": chunk["rewards"], "discount": self.s.gamma * (1.0 - chunk["terminals"].float()),
            "critic_in": chunk.get("critic_observations", chunk["observations"]),
            "next_critic_in": chunk.get("next_critic_observations", chunk["next_observations"]),
        }
        parts = {name: v.split(size) for name, v in parts.items()}
        return [{**{name: v[j] for name, v in parts.items()}, "rows": rows[j], "x": x[j],
                 "mask_r": mask_r[j], "act_r": act_r[j], "n_rows": counts[j]} for j in range(k)]

    def prepared(self, b: dict[str, Any]) -> dict[str, Any]:
        return b if "critic_in" in b else self.prepare(b, 1)[0]

    def losses(self, b: dict[str, Any]) -> dict[str, torch.Tensor]:
        s, b = self.s, self.prepared(b)
        with torch.no_grad():
            next_v = self.critic_target(b["next_critic_in"])
            y = b["rewards"] + b["discount"] * next_v                           # td_target
        v = self.critic(b["critic_in"])
        v_loss = ((v - y) ** 2).mean()
        rows = b["rows"]
        z = masked_logits(self.actor.logits_from(b["x"]), b["mask_r"])
        log_pi = torch.log_softmax(z, dim=-1)
        logp_data = log_pi.gather(1, b["act_r"]).squeeze(1)
        with torch.no_grad():
            pi = torch.softmax(z, dim=-1)
            adv = y[rows] - v[rows]
            weight = (torch.ones_like(adv) if s.algorithm == "bc"
                      else (adv / s.awr_temperature).exp().clamp(max=s.awr_max_weight))
        actor_loss = -(weight * logp_data).sum() / max(b["n_rows"], 1)
        if self.teacher is not None:
            with torch.no_grad():
                p_teacher = torch.softmax(masked_logits(self.teacher.logits_from(b["x"]), b["mask_r"]), dim=-1)
            actor_loss = -(p_teacher * torch.where(p_teacher > 0, log_pi, torch.zeros_like(log_pi))).sum(-1).mean()
        with torch.no_grad():
            entropy = -(pi * log_pi).sum(-1).mean()
            data_prob = logp_data.exp().mean()
        return {"v_loss": v_loss, "actor_loss": actor_loss, "entropy": entropy,
                "data_action_prob": data_prob, "advantage": adv.mean(), "weight": weight.mean()}

    def update(self, b: dict[str, Any]) -> dict[str, float]:
        loss = self.losses(b)
        self.adam.step(torch.autograd.grad(loss["v_loss"] + loss["actor_loss"], self.adam.params,
                                           allow_unused=True))
        soft_update(self.target_params, self.v_params, self.s.tau)
        self.steps_done += 1
        return dict(zip(loss, torch.stack([t.detach() for t in loss.values()]).tolist()))


def train_offline(dataset: dict[str, np.ndarray], settings: OfflineSettings | None = None, seed: int = 0,
                  steps: int = OFFLINE_STEPS, callback: Callable[[int, Actor], dict[str, Any] | None] | None = None,
                  tracker: Tracker | None = None, show_progress: bool = True) -> OfflineResult:
    """Algorithm 1 on ``dataset`` (layout of ``o2o.logs.dataset``): the offline actor and critic.

    Same data, settings, seed and steps give the same weights (one torch thread)."""
    settings = settings or OfflineSettings()
    data = check_dataset(dataset)
    if settings.actor_head in ("scorer", "set-scorer") and not is_probed(dataset_obs_layout(data)):
        raise UserError(f"the scorer actor reads observation layout {OBS_LAYOUT_V2} or {OBS_LAYOUT_V3}, "
                        f"but the data set has {dataset_obs_layout(data)}: export it with --obs-layout "
                        f"{OBS_LAYOUT_V2}, or train with --set-hparam actor_head=plain")
    if settings.critic_input == "pooled" and dataset_obs_layout(data) != OBS_LAYOUT_V3:
        raise UserError(f"the pooled critic reads the candidate blocks of {OBS_LAYOUT_V3}, but the data "
                        f"set has {dataset_obs_layout(data)}: export it with --obs-layout {OBS_LAYOUT_V3}, "
                        f"or train with --set-hparam critic_input=own")
    obs_dim_, n_actions = data["observations"].shape[1], data["action_masks"].shape[1]
    c_dim = critic_dim(n_actions - 1, dataset_obs_layout(data), settings.critic_input)
    cls = DiscreteSACCQL if settings.algorithm == "sac-cql" else AdvantageWeighted
    algo = cls(settings, obs_dim_, n_actions, seed, c_dim)
    if layout_probes(dataset_obs_layout(data)) is not None:  # v3-k: k does not follow from the size
        algo.actor.obs_layout = dataset_obs_layout(data)
    if algo.actor.obs_layout and is_v3(algo.actor.obs_layout):  # the model records the scales of its data
        algo.actor.feature_scales = dataset_feature_scales(data)
    return algo.fit(data, steps, callback=callback, tracker=tracker, show_progress=show_progress)
