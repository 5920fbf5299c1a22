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

import numpy as np
import torch
from torch import nn

MASKED_LOGIT = -1e9


class MLP(nn.Module):
    """Linear -> ReLU -> ... -> Linear."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int):
        super().__init__()
        sizes = [in_dim, *hidden, out_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, layer in enumerate(self.linears):
            x = layer(x)
            if k < len(self.linears) - 1:
                x = torch.relu(x)
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


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits with the unavailable actions set to MASKED_LOGIT (probability 0 after softmax)."""
    return torch.where(mask, logits, torch.full_like(logits, MASKED_LOGIT))


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(masked_logits(logits, mask), dim=-1)


def masked_logsumexp(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log sum_{a in mask} exp(values[a]), per row."""
    return torch.logsumexp(masked_logits(values, mask), dim=-1)


def add_self_head(out: torch.Tensor, obs: torch.Tensor, n_actions: int) -> torch.Tensor:
    """Logits (M, N+1) from an output of N+2 units: the last unit is added to the deciding
    node's own action i, found from the one-hot in obs[:, :N]."""
    n = n_actions - 1
    logits = out[:, :n_actions]
    own = torch.cat([obs[:, :n] * out[:, n_actions:], torch.zeros_like(out[:, :1])], dim=1)
    return logits + own


class Actor(nn.Module):
    """pi_theta(a | o): logits over the N + 1 actions, masked before the softmax."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (64, 64),
                 self_head: bool = False):
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, tuple(hidden)
        self.self_head = self_head
        self.net = MLP(obs_dim, self.hidden, n_actions + int(self_head))

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(obs)
        return add_self_head(out, obs, self.n_actions) if self.self_head else out

    def log_probs(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(M, N+1) masked log-probabilities (MASKED_LOGIT-scale where masked)."""
        return masked_log_softmax(self.logits(obs), mask)

    def probs(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.log_probs(obs, mask).exp()


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


class Critic(nn.Module):
    """V_omega(o): the state-value critic trained offline (eq. 12) and online (eq. 19)."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.obs_dim, self.hidden = obs_dim, tuple(hidden)
        self.net = MLP(obs_dim, self.hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def policy_arrays(actor: Actor, critic: Critic | None) -> dict[str, np.ndarray]:
    """The weights a model file holds: the actor, and the critic when given."""
    arrays = actor.net.to_arrays("actor")
    if critic is not None:
        arrays.update(critic.net.to_arrays("critic"))
    return arrays


def actor_from_arrays(arrays: dict[str, np.ndarray], obs_dim: int, n_actions: int,
                      hidden: tuple[int, ...], self_head: bool = False) -> Actor:
    actor = Actor(obs_dim, n_actions, hidden, self_head)
    actor.net.load_arrays(arrays, "actor")
    return actor


def critic_from_arrays(arrays: dict[str, np.ndarray], obs_dim: int, hidden: tuple[int, ...]) -> Critic:
    critic = Critic(obs_dim, hidden)
    critic.net.load_arrays(arrays, "critic")
    return critic
