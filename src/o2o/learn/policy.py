"""The policy that moves between the learner's phases, and to and from model files.

A :class:`Policy` is what offline training hands to online fine-tuning, and what a model file
holds: the actor pi_theta and the critic V_omega (paper IV-C), the reward credit of the data it
was trained on and the reward statistics of that data set (fine-tuning continues with both), and
the actor's head (and, on observation v3, the feature scales its observations are built with).
Where the saved model may run (``nodes_range``, ``trained_ranges``) is given when it is saved.
A scorer on layout v3 with the pooled critic (or none) has weights that do not depend on N:
``at_nodes`` gives the same policy (the same parameters) for another N. The file format and its
checks live in ``o2o.models`` (no PyTorch there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from o2o.core.decpomdp import OBS_LAYOUT_V3, SCORER_HEADS, critic_dim, obs_dim
from o2o.learn.nets import (
    Actor,
    Critic,
    actor_from_arrays,
    critic_from_arrays,
    policy_arrays,
)
from o2o.models import Model, ModelStore, load_model, save_model


@dataclass
class Policy:
    actor: Actor
    critic: Critic | None = None
    reward_credit: str | None = None          # None: not recorded (a user's own data set)
    reward_stats: dict[str, float] | None = None

    @property
    def nodes(self) -> int:
        return self.actor.n_actions - 1

    @property
    def obs_layout(self) -> str:
        return self.actor.obs_layout

    @property
    def critic_input(self) -> str:
        if self.critic is not None and self.critic.pooled:
            return "pooled"
        if self.critic is None or self.critic.obs_dim == obs_dim(self.nodes, self.obs_layout):
            return "own"
        return "central"

    @property
    def any_nodes(self) -> bool:
        """Whether its weights, actor and critic, do not depend on N (a scorer head on layout
        v3 with no critic or the pooled one): the same policy then runs and trains at any N."""
        return (self.obs_layout == OBS_LAYOUT_V3 and self.actor.head in SCORER_HEADS
                and (self.critic is None or self.critic.pooled))

    def at_nodes(self, n: int) -> "Policy":
        """The same policy for ``n`` nodes, sharing its weights (the same parameters, trained
        together): an actor that gathers the candidates of ``n`` nodes around the same scorer,
        and the same critic. Only for a policy whose weights do not depend on N."""
        if n == self.nodes:
            return self
        if not self.any_nodes:
            raise ValueError(f"a {self.actor.head} actor on {self.obs_layout} with a {self.critic_input} "
                             f"critic has weights for {self.nodes} nodes only")
        actor = Actor(obs_dim(n, self.obs_layout), n + 1, self.actor.hidden, head=self.actor.head,
                      feature_scales=self.actor.feature_scales, obs_layout=self.obs_layout,
                      rule_prior=self.actor.rule_prior)
        actor.net = self.actor.net
        return Policy(actor, self.critic, self.reward_credit, self.reward_stats)

    def _model_fields(self) -> dict[str, Any]:
        prior = self.actor.rule_prior
        return {"rule_prior": None if prior is None else prior.as_dict(),
                "nodes": self.nodes, "hidden": self.actor.hidden, "actor_head": self.actor.head,
                "obs_layout": self.obs_layout, "critic_input": self.critic_input,
                "reward_credit": self.reward_credit, "reward_stats": self.reward_stats,
                "feature_scales": self.actor.feature_scales}

    def save(self, url: str, *, version: int = 1, training: dict[str, Any] | None = None,
             nodes_range: tuple[int, int] | None = None,
             trained_ranges: dict[str, list[float]] | None = None) -> dict[str, Any]:
        """Write the policy as a model folder at ``url``; returns the manifest. ``nodes_range``
        and ``trained_ranges``: where it may run (``o2o.models.save_model``)."""
        return save_model(url, policy_arrays(self.actor, self.critic), version=version,
                          training=training, nodes_range=nodes_range, trained_ranges=trained_ranges,
                          **self._model_fields())

    def publish(self, store_url: str, *, training: dict[str, Any] | None = None,
                nodes_range: tuple[int, int] | None = None,
                trained_ranges: dict[str, list[float]] | None = None) -> tuple[int, str]:
        """Publish the policy as the next version of a model store: (version, sha256)."""
        return ModelStore(store_url).publish(policy_arrays(self.actor, self.critic),
                                             training=training, nodes_range=nodes_range,
                                             trained_ranges=trained_ranges, **self._model_fields())

    @classmethod
    def from_model(cls, model: Model, nodes: int | None = None) -> "Policy":
        """The policy of ``model`` for ``nodes`` nodes (default: the N of its weights; another
        N inside its ``nodes_range``, checked by ``load_model``). A critic whose input depends
        on N is left out at another N (the actor alone runs there)."""
        n, layout = model.nodes, model.obs_layout
        actor = actor_from_arrays(model.arrays, obs_dim(n, layout), n + 1, model.hidden,
                                  head=model.actor_head, feature_scales=model.feature_scales,
                                  obs_layout=layout, rule_prior=model.rule_prior)
        pooled = model.critic_input == "pooled"
        critic = (critic_from_arrays(model.arrays, critic_dim(n, layout, model.critic_input), model.hidden,
                                     pooled) if model.has_critic else None)
        policy = cls(actor, critic, model.reward_credit, model.reward_stats)
        if nodes is None or nodes == n:
            return policy
        if critic is not None and not pooled:
            policy.critic = None
        return policy.at_nodes(nodes)

    @classmethod
    def load(cls, url: str, nodes: int | None = None, need_critic: bool = False) -> tuple["Policy", Model]:
        """The policy at ``url`` (a model folder, or a store's latest version) for ``nodes``
        nodes (default: its weights' N) and its checked ``Model`` (manifest, version)."""
        model = load_model(url, nodes=nodes, need_critic=need_critic)
        return cls.from_model(model, nodes), model
