"""PyTorch side of model files: save an actor (and critic) to a model folder or store, load them
back as trainable modules. The file format and its checks live in ``o2o.models``."""

from __future__ import annotations

from typing import Any

from o2o.core.decpomdp import obs_dim
from o2o.learn.nets import (
    Actor,
    Critic,
    actor_from_arrays,
    critic_from_arrays,
    policy_arrays,
)
from o2o.models import Model, ModelStore, load_model, save_model


def _nodes(actor: Actor) -> int:
    return actor.n_actions - 1


def save_policy(url: str, actor: Actor, critic: Critic | None = None, *, version: int = 1,
                training: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the actor (and critic) as a model folder at ``url``; returns the manifest."""
    return save_model(url, policy_arrays(actor, critic), nodes=_nodes(actor), hidden=actor.hidden,
                      self_head=actor.self_head, version=version, training=training)


def publish_policy(store_url: str, actor: Actor, critic: Critic | None = None, *,
                   training: dict[str, Any] | None = None) -> int:
    """Publish the actor (and critic) as the next version of a model store; returns it."""
    return ModelStore(store_url).publish(policy_arrays(actor, critic), nodes=_nodes(actor),
                                         hidden=actor.hidden, self_head=actor.self_head,
                                         training=training)


def load_policy(url: str, nodes: int | None = None, need_critic: bool = False
                ) -> tuple[Actor, Critic | None, Model]:
    """Actor, critic (None when the model has none) and the checked ``Model`` at ``url`` (a
    model folder, or a store's latest version)."""
    model = load_model(url, nodes=nodes, need_critic=need_critic)
    d, n = obs_dim(model.nodes), model.nodes
    actor = actor_from_arrays(model.arrays, d, n + 1, model.hidden, model.self_head)
    critic = critic_from_arrays(model.arrays, d, model.hidden) if model.has_critic else None
    return actor, critic, model
