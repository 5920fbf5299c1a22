"""Networks of O2O-DRL (paper V-A): actor pi_theta, twin Q_phi1, Q_phi2 and the state-value critic
V_omega, each an MLP with two hidden layers of 64 and ReLU. One model is shared by all nodes;
the node's one-hot is part of its observation (paper IV-C2).

Every softmax and logsumexp over actions is masked by the action mask (paper IV-B): a masked
action gets a logit of ``MASKED_LOGIT``, so its probability is exactly 0 and ``p * log p`` is 0,
without infinities or NaNs.

Weights are exchanged as flat numpy arrays named ``{part}.l{k}.weight`` / ``{part}.l{k}.bias``
(``part`` is ``actor`` or ``critic``, ``k`` the layer), the layout the model files and the
numpy actor (``o2o.schedulers.drl``) read.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from o2o.core.decpomdp import (
    CANDIDATE_FEATURES,
    POOLED_BLOCKS,
    POOLED_CRITIC_FEATURES,
    SCORER_HEADS,
    SET_FEATURES,
    SET_POOLED,
    OBS_LAYOUT_V3,
    V3_BLOCKS,
    V3_NODE_FEATURES,
    FeatureScales,
    candidate_index,
    is_v3,
    layout_of,
)
from o2o.core.decpomdp import obs_dim as obs_dim_of
from o2o.schedulers.drl import PRIOR_EST, PRIOR_REL, PRIOR_SELF, PRIOR_TINY, RulePrior

MASKED_LOGIT = -1e9


class MLP(nn.Module):
    """Linear -> ReLU -> ... -> Linear."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int):
        super().__init__()
        sizes = [in_dim, *hidden, out_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.linear on the parameters directly: the same product as calling each nn.Linear,
        # without a module call per layer.
        # relu in place on the fresh product: the same values (and the same backward, which
        # reads relu's output), one tensor less per layer. Not on a view (F.linear of a 3-d
        # input is a view of a 2-d product): autograd would then copy the whole base back.
        last = len(self.linears) - 1
        for k, layer in enumerate(self.linears):
            x = F.linear(x, layer.weight, layer.bias)
            if k < last:
                x = torch.relu(x) if x._base is not None else torch.relu_(x)
        return x

    def to_arrays(self, part: str) -> dict[str, np.ndarray]:
        out = {}
        for k, layer in enumerate(self.linears):
            out[f"{part}.l{k}.weight"] = layer.weight.detach().cpu().numpy().astype(np.float32).copy()
            out[f"{part}.l{k}.bias"] = layer.bias.detach().cpu().numpy().astype(np.float32).copy()
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray], part: str) -> None:
        with torch.no_grad():
            for k, layer in enumerate(self.linears):
                w = torch.from_numpy(np.asarray(arrays[f"{part}.l{k}.weight"], dtype=np.float32))
                b = torch.from_numpy(np.asarray(arrays[f"{part}.l{k}.bias"], dtype=np.float32))
                if w.shape != layer.weight.shape or b.shape != layer.bias.shape:
                    raise ValueError(f"{part} layer {k}: weight {tuple(w.shape)} does not fit "
                                     f"{tuple(layer.weight.shape)}")
                layer.weight.copy_(w)
                layer.bias.copy_(b)


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam (the paper's optimizer) with the fused kernel where this PyTorch has it on CPU (one
    kernel for all parameters, about 3x faster per step than ``foreach`` here); the update is
    the same Adam update."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


class AdamStep:
    """``optimizer.step()`` for gradients given as a list (from ``torch.autograd.grad``, in the
    order of the optimizer's parameters), without ``.grad`` and ``zero_grad``: the fused Adam
    kernel is called on the optimizer's own state, as ``Adam.step`` calls it, minus the
    per-step regrouping of the tensors in Python. The first step, and every step of an optimizer
    that is not a plain fused Adam, goes through ``optimizer.step()`` itself."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.fused: tuple | None = None

    def _plain_fused(self) -> bool:
        groups = self.optimizer.param_groups
        g = groups[0]
        return (isinstance(self.optimizer, torch.optim.Adam) and len(groups) == 1 and bool(g.get("fused"))
                and not (g["amsgrad"] or g["maximize"] or g["differentiable"] or g["capturable"]
                         or g.get("decoupled_weight_decay", False))
                and not isinstance(g["lr"], torch.Tensor) and hasattr(torch, "_fused_adam_")
                and all(len(self.optimizer.state[p]) for p in self.params))

    def step(self, grads: list[torch.Tensor | None] | tuple[torch.Tensor | None, ...]) -> None:
        if self.fused is None or self.fused is False or any(g is None for g in grads):
            for p, g in zip(self.params, grads):
                p.grad = g
            self.optimizer.step()
            for p in self.params:
                p.grad = None
            if self.fused is None:
                if self._plain_fused():
                    state = [self.optimizer.state[p] for p in self.params]
                    # The step counts (equal, one per parameter) become views of one tensor, so
                    # one add_ counts the step for all.
                    count = torch.stack([s["step"] for s in state])
                    for k, s in enumerate(state):
                        s["step"] = count[k]
                    self.fused = (self.params, [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state],
                                  [s["step"] for s in state], count)
                else:
                    self.fused = False
            return
        params, exp_avgs, exp_avg_sqs, steps, count = self.fused
        g = self.optimizer.param_groups[0]
        beta1, beta2 = g["betas"]
        count.add_(1)
        grads = [g if g.is_contiguous() else g.contiguous() for g in grads]
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                           lr=g["lr"], beta1=beta1, beta2=beta2, weight_decay=g["weight_decay"],
                           eps=g["eps"], maximize=False, grad_scale=None, found_inf=None)


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits with the unavailable actions set to MASKED_LOGIT (probability 0 after softmax)."""
    return torch.where(mask, logits, MASKED_LOGIT)


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(masked_logits(logits, mask), dim=-1)


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Probabilities over the available actions (exactly 0 elsewhere). Computed by ``softmax``
    rather than ``exp`` of the log-probabilities: on CPU, ``exp`` of MASKED_LOGIT-scale inputs
    takes a slow path (about 10x a normal ``exp`` here)."""
    return torch.softmax(masked_logits(logits, mask), dim=-1)


def masked_logsumexp(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log sum_{a in mask} exp(values[a]), per row: max + log sum exp(values - max) over the
    available actions, with the unavailable ones kept out of ``exp`` altogether (for speed, see
    ``masked_softmax``; the value is that of ``torch.logsumexp`` over the available actions)."""
    with torch.no_grad():  # a constant shift (no gradient), computed outside the graph
        top = masked_logits(values, mask).amax(dim=-1, keepdim=True)
    terms = torch.where(mask, torch.where(mask, values - top, 0.0).exp(), 0.0)
    return top.squeeze(-1) + terms.sum(dim=-1).log()


def add_self_head(out: torch.Tensor, obs: torch.Tensor, n_actions: int) -> torch.Tensor:
    """Logits (M, N+1) from an output of N+2 units: the last unit is added to the deciding
    node's own action i, found from the one-hot in obs[:, :N]."""
    n = n_actions - 1
    logits = out[:, :n_actions]
    own = torch.cat([obs[:, :n] * out[:, n_actions:], torch.zeros_like(out[:, :1])], dim=1)
    return logits + own


HEADS = ("plain", "self", *SCORER_HEADS)


class Actor(nn.Module):
    """pi_theta(a | o): logits over the N + 1 actions, masked before the softmax.

    Heads: ``plain`` (the paper's: an MLP from the observation to N + 1 logits), ``self`` (one
    more output, added to the logit of the node's own action, so "keep it local" is learned
    once for all nodes), ``scorer`` (observation layout v2: one MLP scores each candidate
    destination j from its features, ``candidate_index``; the no-task action has logit 0). The
    scorer is the same function of a candidate's features for every node and destination, so
    what it learns about one destination applies to all. ``set-scorer``: the scorer reading,
    besides a candidate's features, their mean and maximum over all candidates
    (``set_candidate_features``), so each score sees the whole set the node probed.

    The layout it reads follows from ``obs_dim`` (``layout_of``). On layout v3 (no one-hot) the
    scorer's weights do not depend on N: ``actor_from_arrays`` builds the same weights for
    another N. ``feature_scales`` (v3): the scales its observations are built with (None: the
    defaults); the model file records them.

    ``rule_prior`` (scorer heads; ``o2o.schedulers.drl.RulePrior`` or its values): each
    candidate's score is the rule's log-weight plus the MLP's output, and the MLP's last layer
    starts at zero, so the initial policy is ``slack-reliable`` at those values and learning
    moves it from there (a residual on the rule)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (64, 64),
                 self_head: bool = False, head: str | None = None,
                 feature_scales: FeatureScales | None = None, obs_layout: str | None = None,
                 rule_prior: RulePrior | None = None):
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, tuple(hidden)
        try:
            self.obs_layout: str | None = layout_of(obs_dim, n_actions - 1)
        except ValueError:  # an input size of no layout (a bare MLP actor, e.g. in tests)
            self.obs_layout = None
        if obs_layout is not None:  # a k-probe layout's k does not follow from obs_dim
            if self.obs_layout != layout_of(obs_dim_of(n_actions - 1, obs_layout), n_actions - 1):
                raise ValueError(f"{obs_dim} inputs do not fit layout {obs_layout} at {n_actions - 1} nodes")
            self.obs_layout = obs_layout
        self.head = head or ("self" if self_head else "plain")
        if self.head not in HEADS:
            raise ValueError(f"actor head must be one of {HEADS}, got {self.head!r}")
        self.self_head = self.head == "self"
        if self.self_head and self.obs_layout is not None and is_v3(self.obs_layout):
            raise ValueError(f"the self head reads the one-hot of layouts v1 and v2, not {OBS_LAYOUT_V3}")
        self.feature_scales = ((feature_scales or FeatureScales()) if self.obs_layout and is_v3(self.obs_layout)
                               else None)
        if self.head in SCORER_HEADS:
            self.register_buffer("index", torch.from_numpy(candidate_index(n_actions - 1, self.obs_layout)),
                                 persistent=False)
            self.net = MLP(SET_FEATURES if self.head == "set-scorer" else CANDIDATE_FEATURES,
                           self.hidden, 1)
        else:
            self.net = MLP(obs_dim, self.hidden, n_actions + int(self.self_head))
        self.rule_prior = RulePrior.from_value(rule_prior)
        if self.rule_prior is not None:
            if self.head not in SCORER_HEADS:
                raise ValueError(f"a rule prior needs a scorer head, not {self.head}")
            with torch.no_grad():  # the initial policy is the rule's
                self.net.linears[-1].weight.zero_()
                self.net.linears[-1].bias.zero_()

    def prior_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N) rule-prior logits from ``head_input`` (its first CANDIDATE_FEATURES columns):
        ``RulePrior.logits`` in torch, float32, the same operations in the same order."""
        p = self.rule_prior
        e = 2.0 * x[..., PRIOR_EST]
        rel = x[..., PRIOR_REL].clamp_min(PRIOR_TINY)
        slack = (1.0 - e).clamp_min(PRIOR_TINY)
        w = p.rel_power * rel.log() + p.slack_power * slack.log()
        clipped = w.clamp(-p.cap, 0.0)
        if p.gap is None:
            out = torch.where(e <= p.peer_margin, clipped, -2.0 * p.cap - 4.0 * p.cap * e)
        else:
            out = torch.where(e <= p.peer_margin, clipped, clipped - p.gap - e)
        local = (x[..., PRIOR_SELF] > 0.5) & (e <= p.local_margin)
        return torch.where(local, torch.full_like(out, p.cap), out)

    def head_input(self, obs: torch.Tensor) -> torch.Tensor:
        """What the MLP reads: the observation, or for the scorer each candidate's features,
        (M, N, CANDIDATE_FEATURES). It depends on the data only, so a learner may gather it
        once for many steps."""
        if self.head == "set-scorer":
            x = obs[:, self.index]
            pooled = x[..., SET_POOLED]
            n = x.shape[-2]
            return torch.cat([x, pooled.mean(dim=-2, keepdim=True).expand(-1, n, -1),
                              pooled.amax(dim=-2, keepdim=True).expand(-1, n, -1)], dim=-1)
        return obs[:, self.index] if self.head == "scorer" else obs

    def logits_from(self, x: torch.Tensor) -> torch.Tensor:
        """The logits from ``head_input(obs)``."""
        if self.head in SCORER_HEADS:
            scores = self.net(x).squeeze(-1)                            # (M, N)
            if self.rule_prior is not None:
                scores = scores + self.prior_logits(x)
            return torch.cat([scores, torch.zeros_like(scores[:, :1])], dim=1)
        out = self.net(x)
        return add_self_head(out, x, self.n_actions) if self.self_head else out

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits_from(self.head_input(obs))

    def log_probs(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(M, N+1) masked log-probabilities (MASKED_LOGIT-scale where masked)."""
        return masked_log_softmax(self.logits(obs), mask)

    def probs(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_softmax(self.logits(obs), mask)

    def policy(self, obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi, pi), (M, N+1) each, from one forward pass."""
        z = masked_logits(self.logits(obs), mask)
        return torch.log_softmax(z, dim=-1), torch.softmax(z, dim=-1)


class QNet(nn.Module):
    """Q_phi(o, .): one value per action."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (64, 64),
                 self_head: bool = False):
        super().__init__()
        self.n_actions, self.self_head = n_actions, self_head
        self.net = MLP(obs_dim, tuple(hidden), n_actions + int(self_head))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(obs)
        return add_self_head(out, obs, self.n_actions) if self.self_head else out


class StackedMLP(nn.Module):
    """K MLPs of one shape run as one module: the weights of layer l are stacked into
    (K, in, out), so one batched matrix product per layer evaluates all K members. Each member
    is initialised as ``nn.Linear`` initialises its layers (U(+-1/sqrt(fan_in)))."""

    def __init__(self, k: int, in_dim: int, hidden: tuple[int, ...], out_dim: int):
        super().__init__()
        sizes = [in_dim, *hidden, out_dim]
        self.k = k
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(a)
            self.weights.append(nn.Parameter(torch.empty(k, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(k, 1, b).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, in) shared by all members, or (K, M, in) -> (K, M, out)."""
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            # A shared (M, in) input is expanded (a view: no copy, as matmul would make) to one
            # batch per member; bmm + b there, the same sums as matmul(x, w) + b. relu in
            # place, as in MLP.forward.
            x = torch.baddbmm(b, x, w) if x.dim() == 3 else torch.bmm(x.expand(self.k, *x.shape), w).add_(b)
            if k < last:
                x = torch.relu_(x)
        return x

    def load_members(self, mlps: list[MLP]) -> None:
        """Copy the weights of K ``MLP`` s (``nn.Linear`` layout, (out, in)) into the stack."""
        with torch.no_grad():
            for l, (w, b) in enumerate(zip(self.weights, self.biases)):
                w.copy_(torch.stack([m.linears[l].weight.t() for m in mlps]))
                b.copy_(torch.stack([m.linears[l].bias[None] for m in mlps]))

    def member(self, k: int, mlp: MLP) -> MLP:
        """Member k's weights copied into ``mlp`` (same sizes); returns ``mlp``."""
        with torch.no_grad():
            for l, layer in enumerate(mlp.linears):
                layer.weight.copy_(self.weights[l][k].t())
                layer.bias.copy_(self.biases[l][k, 0])
        return mlp


class TwinQ(nn.Module):
    """Q_phi1 and Q_phi2 of Algorithm 1 as one batched module (``StackedMLP`` with K = 2):
    ``forward(obs)`` is (2, M, N+1), member k being Q_phi(k+1)(o, .)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (64, 64),
                 self_head: bool = False):
        super().__init__()
        self.n_actions, self.self_head = n_actions, self_head
        self.net = StackedMLP(2, obs_dim, tuple(hidden), n_actions + int(self_head))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(obs)
        if not self.self_head:
            return out
        return torch.stack([add_self_head(out[k], obs, self.n_actions) for k in range(2)])

    def load_qnets(self, q1: QNet, q2: QNet) -> None:
        self.net.load_members([q1.net, q2.net])

    def qnet(self, k: int) -> QNet:
        """Member k as a separate ``QNet`` (a copy), e.g. to check it against the equations."""
        hidden = tuple(w.shape[2] for w in self.net.weights[:-1])
        q = QNet(self.net.weights[0].shape[1], self.n_actions, hidden, self.self_head)
        self.net.member(k, q.net)
        return q


class Critic(nn.Module):
    """V_omega(o): the state-value critic trained offline (eq. 12) and online (eq. 19).

    ``pooled`` (observation v3): the MLP reads ``pooled_critic_input`` of the observation
    (the node part, then the mean and the maximum over the candidates of their blocks), of
    ``POOLED_CRITIC_FEATURES`` values at every N, so the same critic scores observations of
    any N (``obs_dim`` is then the MLP's input size, not an observation's)."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...] = (64, 64), pooled: bool = False):
        super().__init__()
        if pooled and obs_dim != POOLED_CRITIC_FEATURES:
            raise ValueError(f"the pooled critic reads {POOLED_CRITIC_FEATURES} values, not {obs_dim}")
        self.obs_dim, self.hidden, self.pooled = obs_dim, tuple(hidden), pooled
        self.net = MLP(obs_dim, self.hidden, 1)

    def head_input(self, obs: torch.Tensor) -> torch.Tensor:
        """What the MLP reads: the observation, or its pooled summary (the torch form of
        ``pooled_critic_input``)."""
        if not self.pooled:
            return obs
        n = (obs.shape[-1] - V3_NODE_FEATURES) // V3_BLOCKS
        blocks = obs[..., V3_NODE_FEATURES:].unflatten(-1, (V3_BLOCKS, n))[..., POOLED_BLOCKS, :]
        return torch.cat([obs[..., :V3_NODE_FEATURES], blocks.mean(-1), blocks.amax(-1)], dim=-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.head_input(obs)).squeeze(-1)


def policy_arrays(actor: Actor, critic: Critic | None) -> dict[str, np.ndarray]:
    """The weights a model file holds: the actor, and the critic when given."""
    arrays = actor.net.to_arrays("actor")
    if critic is not None:
        arrays.update(critic.net.to_arrays("critic"))
    return arrays


def actor_from_arrays(arrays: dict[str, np.ndarray], obs_dim: int, n_actions: int,
                      hidden: tuple[int, ...], self_head: bool = False, head: str | None = None,
                      feature_scales: FeatureScales | None = None, obs_layout: str | None = None,
                      rule_prior: RulePrior | None = None) -> Actor:
    actor = Actor(obs_dim, n_actions, hidden, self_head, head, feature_scales, obs_layout, rule_prior)
    actor.net.load_arrays(arrays, "actor")
    return actor


def critic_from_arrays(arrays: dict[str, np.ndarray], obs_dim: int, hidden: tuple[int, ...],
                       pooled: bool = False) -> Critic:
    critic = Critic(obs_dim, hidden, pooled)
    critic.net.load_arrays(arrays, "critic")
    return critic
