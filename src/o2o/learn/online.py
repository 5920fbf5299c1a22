"""Online fine-tuning of O2O-DRL (paper IV-C3, Algorithm 2): PPO with GAE, from the offline actor
and critic (both loaded), on the batched environment ``o2o.sim.env.OffloadVecEnv``.

Each iteration (Alg. 2, lines 2-8):

1. collect ``episodes_per_batch`` episodes D_k with the current policy; all B x N nodes of a slot
   are decided in one forward pass, sampled by inverse CDF from a seeded generator;
2. normalise the team rewards of D_k (``reward_norm``: ``batch`` = (r - mean) / std over D_k);
3. GAE advantages per node trajectory with the critic of the collection (omega_old)::

       delta_t = r_t + gamma V(o_{t+1}) - V(o_t)                                    (eq. 14)
       A_t     = delta_t + gamma lambda A_{t+1}                                     (eq. 13)
       V_t     = A_t + V(o_t)                                                       (eq. 15)

   (t = T-1 is terminal: no bootstrap, A_T = 0);
4. K epochs of minibatch steps: the actor by the PPO clip objective::

       max mean min(rho A, clip(rho, 1 - eps, 1 + eps) A),  rho = pi(a|o) / pi_old(a|o)   (eqs. 16-18)

   over the rows where the node had a task (a no-task row has one available action, rho = 1
   and no gradient), and the critic by mean (V(o) - V_t)^2 over all rows (eq. 19).

For fine-tuning a model trained elsewhere (the generalist of ``o2o.learn.generalist`` on a new
network) the settings add, all off by default: separate learning rates of the actor and the
critic (``actor_lr``, ``critic_lr``); a critic warm-up (``critic_warmup``: the first so many
updates fit only the critic, so the first actor update does not use values fitted to other
networks, or to another reward credit); and a penalty ``kl_coef`` x KL(pi_start || pi) on the
decision rows, pi_start the actor the run started from. ``fresh_critic`` replaces the model's
critic by a new one (of ``critic_input``, e.g. ``own`` where the model's is pooled), fitted
during the warm-up.

Masks are applied in every softmax. Online-only (the baseline) is the same algorithm from a
random initialisation (``policy=None``) on the same number of environment steps.

Collection (``OnlinePPO.collect``, on the simulator) and the update (``PPOUpdate``, lines 3-8)
are apart, so a batch D_k can also come from task logs (``o2o.learn.from_logs``: the testbed).
Training episodes of training seed k come from ``o2o.core.seeds.online(k)``, disjoint from the
seeds of logs and evaluation, and the same for O2O-DRL and online-only.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from o2o.core.decpomdp import (
    OBS_LAYOUT_VERSION,
    FeatureScales,
    central_critic_input,
    critic_dim,
    obs_dim,
)
from o2o.core.errors import UserError
from o2o.core.memory import keep_freed_memory
from o2o.core.network import Network
from o2o.core.progress import progress_bar
from o2o.core.scenario import Scenario
from o2o.core.seeds import online as online_seeds
from o2o.learn.nets import Actor, AdamStep, Critic, adam
from o2o.learn.policy import Policy
from o2o.learn.settings import ONLINE_EPISODES, OnlineSettings
from o2o.learn.tracking import Tracker
from o2o.schedulers.drl import sample_inverse_cdf
from o2o.sim.env import OffloadVecEnv

# ----------------------------------------------------------------------------- loss functions


def initial_policy(n: int, settings: OnlineSettings, obs_layout: str, reward_credit: str,
                   feature_scales: FeatureScales | None = None) -> Policy:
    """A randomly initialised actor and critic for ``n`` nodes (from torch's current seed):
    where the online-only baseline starts (paper V-B). ``feature_scales``: layout v3's (None:
    the defaults)."""
    actor = Actor(obs_dim(n, obs_layout), n + 1, settings.hidden, head=settings.actor_head,
                  feature_scales=feature_scales, obs_layout=obs_layout, rule_prior=settings.rule_prior)
    return Policy(actor, new_critic(n, settings.critic_input, settings.hidden, obs_layout), reward_credit)


def new_critic(n: int, critic_input: str, hidden: tuple[int, ...], obs_layout: str) -> Critic:
    """A randomly initialised critic (from torch's current seed) reading ``critic_input`` for
    ``n`` nodes on ``obs_layout``."""
    try:
        c_dim = critic_dim(n, obs_layout, critic_input)
    except ValueError as err:
        raise UserError(f"critic_input={critic_input}: {err}") from None
    return Critic(c_dim, hidden, pooled=critic_input == "pooled")


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminals: np.ndarray,
        gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE (eqs. 13-15) along axis 0 (time). Returns (advantages A_t, value targets V_t)."""
    not_term = 1.0 - terminals.astype(np.float64)
    delta = rewards + gamma * not_term * next_values - values          # eq. 14
    adv = np.zeros(np.broadcast_shapes(delta.shape), dtype=np.float64)
    running = np.zeros(delta.shape[1:], dtype=np.float64)
    for t in range(delta.shape[0] - 1, -1, -1):
        running = delta[t] + gamma * lam * not_term[t] * running        # eq. 13
        adv[t] = running
    return adv, adv + values                                            # eq. 15


def ppo_clip_objective(new_log_prob: torch.Tensor, old_log_prob: torch.Tensor,
                       advantages: torch.Tensor, clip: float) -> torch.Tensor:
    """Eq. 16: mean min(rho A, eta(rho) A) with rho of eq. 17 and the clip eta of eq. 18."""
    ratio = (new_log_prob - old_log_prob).exp()
    return torch.min(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages).mean()


def clip_grad_norm(grads: tuple[torch.Tensor | None, ...], max_norm: float) -> tuple[torch.Tensor | None, ...]:
    """``torch.nn.utils.clip_grad_norm_`` on a list of gradients (in place, returned): scaled by
    min(1, max_norm / (||g||_2 + 1e-6)), the norm over all of them, as that function computes
    it."""
    present = [g for g in grads if g is not None]
    if present:
        with torch.no_grad():
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(present, 2.0)), 2.0)
            torch._foreach_mul_(present, torch.clamp(max_norm / (total + 1e-6), max=1.0))
    return grads


def normalize_batch_rewards(rewards: np.ndarray, mode: str, stats: dict[str, float] | None) -> np.ndarray:
    if mode == "batch":
        std = float(rewards.std())
        return (rewards - rewards.mean()) / (std if std > 1e-8 else 1.0)
    if mode == "fixed":
        if not stats:
            raise ValueError("reward_norm='fixed' needs the offline data set's reward statistics")
        return (rewards - stats["mean"]) / stats["std"]
    return rewards


def critic_inputs(obs: np.ndarray, critic_input: str) -> np.ndarray:
    """What the critic reads for observations (..., N, D) of whole slots: the node's own
    observation, or with ``central`` also the slot's global state (centralized training,
    decentralized execution: only the critic sees it, and only during training). The
    ``pooled`` critic reads the observation and pools it itself (``Critic``)."""
    return central_critic_input(obs) if critic_input == "central" else obs


# ----------------------------------------------------------------------------- algorithm


@dataclass
class OnlineResult:
    """The fine-tuned policy, the evaluation curve, the per-batch record and, per training
    episode in the order collected, what its users got from the policy of the moment."""

    policy: Policy
    curve: list[dict[str, Any]]     # one point per evaluation: episodes, env_steps, success_rate...
    history: list[dict[str, Any]]   # one record per batch: training success rate, losses
    episodes: int
    seconds: float
    episode_seeds: list[int] = field(default_factory=list)    # online(k) seeds, as collected
    episode_tasks: list[int] = field(default_factory=list)    # tasks of each of those episodes
    episode_success: list[int] = field(default_factory=list)  # ... and how many succeeded

    @property
    def critic(self) -> Critic:
        return self.policy.critic


class PPOUpdate:
    """Algorithm 2, lines 3-8, on one collected batch D_k (arrays (T, B, N, ...): observations,
    masks, actions, behaviour log-probabilities, values of the collecting critic, rewards (T, B))
    from the simulator or from task logs. ``rng`` draws the minibatch permutations."""

    def __init__(self, settings: OnlineSettings, actor: Actor, critic: Critic,
                 rng: np.random.Generator, reward_stats: dict[str, float] | None = None,
                 critic_input: str = "own"):
        keep_freed_memory()
        self.s, self.actor, self.critic, self.rng = settings, actor, critic, rng
        self.reward_stats = reward_stats
        self.critic_input = critic_input
        s = self.s
        self.actor_opt = adam(self.actor.parameters(), s.lr if s.actor_lr is None else s.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), s.lr if s.critic_lr is None else s.critic_lr)
        self.actor_step, self.critic_step = AdamStep(self.actor_opt), AdamStep(self.critic_opt)
        self.params = [*self.actor_step.params, *self.critic_step.params]
        self.updates_done = 0
        # pi_start of the KL penalty: a frozen copy of the actor as it is now.
        self.reference: Actor | None = None
        if s.kl_coef > 0:
            self.reference = copy.deepcopy(actor).requires_grad_(False)

    def bind_actor(self, actor: Actor) -> None:
        """Go on with ``actor``: the same weights gathered for another N (``Policy.at_nodes``);
        the reference of the KL penalty follows it to that N."""
        if self.reference is not None and actor.n_actions != self.reference.n_actions:
            reference = copy.deepcopy(actor).requires_grad_(False)
            reference.net = self.reference.net
            self.reference = reference
        self.actor = actor

    def update(self, buf: dict[str, np.ndarray]) -> dict[str, float]:
        s = self.s
        T, B, N = buf["act"].shape
        # Team rewards (T, B) are every node's; node rewards (T, B, N) each node's own.
        rewards = normalize_batch_rewards(buf["rewards"], s.reward_norm, self.reward_stats)
        if rewards.ndim == 2:
            rewards = np.broadcast_to(rewards[:, :, None], (T, B, N))
        values = buf["value"].astype(np.float64)
        next_values = np.concatenate([values[1:], np.zeros_like(values[:1])])
        terminals = np.zeros((T, 1, 1), dtype=bool)
        terminals[-1] = True
        adv, returns = gae(rewards, values, next_values,
                           np.broadcast_to(terminals, (T, B, N)), s.gamma, s.gae_lambda)
        flat = lambda x: torch.from_numpy(np.ascontiguousarray(x).reshape(T * B * N, *x.shape[3:]))  # noqa: E731
        obs, mask, act = flat(buf["obs"]), flat(buf["mask"]), flat(buf["act"])
        critic_obs = flat(critic_inputs(buf["obs"], self.critic_input))
        old_logp, adv_t = flat(buf["logp"]), flat(adv.astype(np.float32))
        ret_t = flat(returns.astype(np.float32))
        decision = torch.nonzero(~mask[:, -1]).squeeze(1)  # rows with a task
        rows = T * B * N
        n_mb = max(1, math.ceil(decision.numel() / s.minibatch_size))
        stats: dict[str, float] = {}
        n_steps = 0
        warmup = self.updates_done < s.critic_warmup   # the actor stays as it is
        self.updates_done += 1
        ref_log_pi = None
        if self.reference is not None and not warmup:
            with torch.no_grad():
                ref_log_pi = self.reference.policy(obs, mask)[0]
        for _ in range(s.epochs):
            dec_perm = decision[torch.from_numpy(self.rng.permutation(decision.numel()))]
            all_perm = torch.from_numpy(self.rng.permutation(rows))
            for dec_idx, all_idx in zip(dec_perm.tensor_split(n_mb), all_perm.tensor_split(n_mb)):
                if warmup:
                    v_loss = ((self.critic(critic_obs[all_idx]) - ret_t[all_idx]) ** 2).mean()
                    grads = torch.autograd.grad(v_loss, self.critic_step.params, allow_unused=True)
                    self.critic_step.step(clip_grad_norm(grads, s.max_grad_norm))
                    stats["v_loss"] = stats.get("v_loss", 0.0) + v_loss.item()
                    n_steps += 1
                    continue
                # Actor: PPO clip objective (eq. 16) on decision rows.
                log_pi, pi = self.actor.policy(obs[dec_idx], mask[dec_idx])
                new_logp = log_pi.gather(1, act[dec_idx][:, None]).squeeze(1)
                a = adv_t[dec_idx]
                if s.normalize_advantages and a.numel() > 1:
                    a = (a - a.mean()) / (a.std() + 1e-8)
                objective = ppo_clip_objective(new_logp, old_logp[dec_idx], a, s.clip)
                entropy = -(pi * log_pi).sum(-1).mean()
                # Critic: MSE to the GAE targets (eq. 19) on all rows.
                v_loss = ((self.critic(critic_obs[all_idx]) - ret_t[all_idx]) ** 2).mean()
                loss = -(objective + s.entropy_coef * entropy) + v_loss
                if ref_log_pi is not None:  # KL(pi_start || pi) on the decision rows
                    ref = ref_log_pi[dec_idx]
                    kl_start = (ref.exp() * (ref - log_pi)).sum(-1).mean()
                    loss = loss + s.kl_coef * kl_start
                    stats["kl_start"] = stats.get("kl_start", 0.0) + kl_start.item()
                # One backward pass for both (their parameters are disjoint), then each
                # network's gradient clipped by its own norm and its own Adam step.
                grads = torch.autograd.grad(loss, self.params, allow_unused=True)
                k = len(self.actor_step.params)
                self.actor_step.step(clip_grad_norm(grads[:k], s.max_grad_norm))
                self.critic_step.step(clip_grad_norm(grads[k:], s.max_grad_norm))
                with torch.no_grad():
                    log_ratio = new_logp - old_logp[dec_idx]
                    kl = ((log_ratio.exp() - 1) - log_ratio).mean()
                    clipfrac = ((log_ratio.exp() - 1).abs() > s.clip).float().mean()
                    values = torch.stack([objective, v_loss, entropy, kl, clipfrac]).tolist()
                for k, v in zip(("ppo_objective", "v_loss", "entropy", "approx_kl", "clipfrac"), values):
                    stats[k] = stats.get(k, 0.0) + v
                n_steps += 1
        out = {k: v / n_steps for k, v in stats.items()}
        if warmup:
            out["critic_warmup"] = 1.0
        return out


class OnlinePPO:
    """Algorithm 2 on ``OffloadVecEnv(scenario, network)``: fine-tunes ``policy`` (actor and
    critic, in place) or, when ``policy`` is None, trains from a random initialisation (the
    online-only baseline) with ``reward_credit``. Fine-tuning keeps the policy's reward credit;
    asking for another one is refused."""

    def __init__(self, scenario: Scenario, network: Network, settings: OnlineSettings | None = None,
                 policy: Policy | None = None, seed: int = 0, reward_credit: str | None = None,
                 obs_layout: str = OBS_LAYOUT_VERSION):
        self.s = settings or OnlineSettings()
        credit = reward_credit
        reward_stats = policy.reward_stats if policy is not None else None
        if policy is not None and policy.reward_credit is not None:
            if credit is not None and credit != policy.reward_credit:
                if self.s.critic_warmup == 0:
                    raise UserError(f"the model was trained on {policy.reward_credit}-credited rewards; "
                                    f"fine-tuning it with {credit} credit would change what its critic "
                                    f"means (use --reward-credit {policy.reward_credit}, refit the critic "
                                    f"first with --set-hparam critic_warmup=M, M > 0 updates, or train "
                                    f"offline on a data set exported with {credit} credit)")
                if self.s.reward_norm == "fixed":
                    raise UserError(f"reward_norm=fixed uses the statistics of the model's "
                                    f"{policy.reward_credit}-credited rewards, not of {credit} credit; "
                                    "use --set-hparam reward_norm=batch")
                reward_stats = None  # the critic is refit to the new credit during the warm-up
            else:
                credit = policy.reward_credit
        self.reward_credit = credit or "slot"
        self.seed = int(seed)
        torch.manual_seed(seed)
        if policy is None:
            policy = initial_policy(network.n, self.s, obs_layout, self.reward_credit)
        elif self.s.fresh_critic:
            if self.s.critic_warmup == 0:
                raise UserError("fresh_critic starts from a critic that knows nothing; fit it first "
                                "with --set-hparam critic_warmup=M (M > 0 updates)")
            policy = policy.at_nodes(network.n)
            policy = Policy(policy.actor, new_critic(network.n, self.s.critic_input, policy.actor.hidden,
                                                     policy.obs_layout),
                            policy.reward_credit, policy.reward_stats)
        if policy.critic is None:
            raise ValueError("fine-tuning loads both the offline actor and critic")
        self.critic_input = policy.critic_input
        self.policy = Policy(policy.actor, policy.critic, self.reward_credit, reward_stats)
        self._bind(scenario, network)
        self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x0A11]))
        self.updater = PPOUpdate(self.s, self.actor, self.critic, self.rng, reward_stats,
                                 self.critic_input)
        self.episodes_done = 0

    def _bind(self, scenario: Scenario, network: Network) -> None:
        """The environment of ``scenario`` and ``network``, with the policy's layout and feature
        scales, and the policy for its N (``Policy.at_nodes``: the same weights)."""
        policy = self.policy.at_nodes(network.n)
        layout = policy.obs_layout
        self.env = OffloadVecEnv(scenario, network, reward_credit=self.reward_credit, obs_layout=layout,
                                 feature_scales=policy.actor.feature_scales)
        self.scenario, self.network = scenario, network
        actor, critic = policy.actor, policy.critic
        if actor.obs_dim != self.env.obs_dim or actor.n_actions != self.env.n_actions or \
                critic.obs_dim != critic_dim(network.n, layout, self.critic_input):
            raise ValueError(f"actor/critic are for obs_dim {actor.obs_dim}, the env has {self.env.obs_dim}")
        self.policy, self.actor, self.critic = policy, actor, critic

    def move_to(self, scenario: Scenario, network: Network) -> None:
        """Continue Algorithm 2 on another scenario and network, of any N when the policy's
        weights do not depend on N (``Policy.any_nodes``): the same weights, Adam moments,
        generators and count of episodes (the next ``train`` call goes on with the next
        episodes of the same ``online(seed)`` range)."""
        self._bind(scenario, network)
        self.updater.bind_actor(self.actor)

    # Alg. 2, line 2
    def collect(self, seeds: list[int]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        env = self.env
        obs, mask = env.reset(seeds)
        B, N, T, D, A = len(seeds), env.n, self.scenario.slots, env.obs_dim, env.n_actions
        buf = {"obs": np.empty((T, B, N, D), np.float32), "mask": np.empty((T, B, N, A), bool),
               "act": np.empty((T, B, N), np.int64), "logp": np.empty((T, B, N), np.float32),
               "value": np.empty((T, B, N), np.float32)}
        for t in range(T):
            o = torch.from_numpy(obs.reshape(-1, D))
            m = torch.from_numpy(mask.reshape(-1, A))
            with torch.no_grad():
                log_pi, pi = self.actor.policy(o, m)
                value = self.critic(torch.from_numpy(
                    critic_inputs(obs, self.critic_input).reshape(B * N, -1)))
            act = sample_inverse_cdf(pi.double().numpy(), self.rng.random(B * N))
            buf["obs"][t], buf["mask"][t] = obs, mask
            buf["act"][t] = act.reshape(B, N)
            buf["logp"][t] = log_pi.gather(1, torch.from_numpy(act)[:, None]).squeeze(1).numpy().reshape(B, N)
            buf["value"][t] = value.numpy().reshape(B, N)
            obs, mask, _, done, info = env.step(act.reshape(B, N))
        assert done.all()
        if self.reward_credit == "node":  # (T, B, N): each node's own outcome
            buf["rewards"] = info["node_rewards"].transpose(1, 0, 2).astype(np.float64)
        elif "credit_rewards" in info:    # (T, B, N): own outcome - w * harm to the others
            buf["rewards"] = info["credit_rewards"].transpose(1, 0, 2).astype(np.float64)
        else:                             # (T, B): the team reward
            buf["rewards"] = info["episode_rewards"].T.astype(np.float64)
        return buf, info["metrics"]

    def update(self, buf: dict[str, np.ndarray]) -> dict[str, float]:
        return self.updater.update(buf)

    def train(self, episodes: int, eval_every: int = 0,
              eval_fn: Callable[[Actor], dict[str, Any]] | None = None,
              tracker: Tracker | None = None, show_progress: bool = True,
              desc: str = "online") -> OnlineResult:
        """Run Algorithm 2 for exactly ``episodes`` episodes: batches of ``episodes_per_batch``,
        the last one smaller when ``episodes`` is not a multiple of it. With
        ``eval_fn``, evaluate before the first update (episodes = 0), then every ``eval_every``
        episodes and at the end."""
        start = time.perf_counter()
        tracker = tracker or Tracker()
        curve: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        episodes_seen: dict[str, list[int]] = {"seeds": [], "tasks": [], "success": []}
        T = self.scenario.slots
        per_batch = self.s.episodes_per_batch

        def evaluate() -> dict[str, Any]:
            point = {"episodes": self.episodes_done, "env_steps": self.episodes_done * T,
                     **eval_fn(self.actor), "elapsed_s": time.perf_counter() - start}
            curve.append(tracker.log(f"{desc}_eval", self.episodes_done, point))
            return point

        last_eval = evaluate() if eval_fn is not None else {}
        next_eval = eval_every if eval_every > 0 else None
        with progress_bar(total=episodes, desc=desc, unit="episode", disable=not show_progress) as bar:
            while self.episodes_done < episodes:
                batch = min(per_batch, episodes - self.episodes_done)
                seeds = online_seeds(self.seed).take(batch, self.episodes_done)
                buf, metrics = self.collect(seeds)
                episodes_seen["seeds"] += seeds
                episodes_seen["tasks"] += metrics["tasks"].astype(int).tolist()
                episodes_seen["success"] += metrics["success"].astype(int).tolist()
                record = self.update(buf)
                self.episodes_done += batch
                record.update({"train_success_rate": float(metrics["success_rate"].mean()),
                               "episodes": self.episodes_done, "elapsed_s": time.perf_counter() - start})
                history.append(tracker.log(desc, self.episodes_done, record))
                finished = self.episodes_done >= episodes
                if eval_fn is not None and ((next_eval is not None and self.episodes_done >= next_eval) or finished):
                    last_eval = evaluate()
                    while next_eval is not None and next_eval <= self.episodes_done:
                        next_eval += eval_every
                post = {"train": f"{record['train_success_rate']:.3f}"}
                if "success_rate" in last_eval:
                    post["eval"] = f"{last_eval['success_rate']:.3f}"
                bar.set_postfix(post)
                bar.update(batch)
        return OnlineResult(self.policy, curve, history, self.episodes_done,
                            time.perf_counter() - start, episodes_seen["seeds"],
                            episodes_seen["tasks"], episodes_seen["success"])


def train_online(scenario: Scenario, network: Network, policy: Policy | None = None,
                 settings: OnlineSettings | None = None, episodes: int = ONLINE_EPISODES,
                 seed: int = 0, eval_every: int = 0,
                 eval_fn: Callable[[Actor], dict[str, Any]] | None = None,
                 tracker: Tracker | None = None, show_progress: bool = True, desc: str = "online",
                 reward_credit: str | None = None, obs_layout: str = OBS_LAYOUT_VERSION) -> OnlineResult:
    """Algorithm 2: fine-tune ``policy`` (actor and critic from offline training, trained in
    place) online for ``episodes`` episodes; with ``policy=None`` it is the online-only
    baseline, with rewards credited by ``reward_credit``."""
    algo = OnlinePPO(scenario, network, settings, policy, seed, reward_credit, obs_layout)
    return algo.train(episodes, eval_every, eval_fn, tracker, show_progress, desc)
