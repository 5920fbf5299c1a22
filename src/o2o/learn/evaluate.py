"""Evaluating learned policies in the simulator, exactly as a node would run them.

A policy (a PyTorch ``Actor``, a ``NumpyActor`` or a loaded ``Model``) is turned into the
``drl`` rule (``o2o.schedulers.drl.DRLRule``: numpy actor, masked softmax, inverse-CDF sampling
with the episode's own uniforms) and run by ``o2o.sim.rollout.simulate`` on the given episode
seeds, so the numbers are those of deployment and every method sees the same episodes.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

from o2o.core.decpomdp import Observer
from o2o.core.metrics import mean_ci95
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.models import Model
from o2o.schedulers.drl import DRLRule, NumpyActor
from o2o.sim.rollout import simulate


def as_numpy_actor(policy) -> NumpyActor:
    """A ``NumpyActor`` from an ``Actor`` (torch), a ``Model`` or a ``NumpyActor``."""
    if isinstance(policy, NumpyActor):
        return policy
    if isinstance(policy, Model):
        return NumpyActor.from_model(policy)
    from o2o.learn.nets import Actor  # torch only when a torch actor is passed

    if isinstance(policy, Actor):
        return NumpyActor([(layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy())
                           for layer in policy.net.linears], head=policy.head,
                          nodes=policy.n_actions - 1, obs_layout=policy.obs_layout,
                          feature_scales=policy.feature_scales, rule_prior=policy.rule_prior)
    raise TypeError(f"cannot evaluate a {type(policy).__name__}")


def at_temperature(actor: NumpyActor, temperature: float) -> NumpyActor:
    """A copy of ``actor`` whose logits are divided by ``temperature`` (every logit, a rule
    prior's too; the no-task logit is 0): T < 1 draws sharper, T > 1 softer, 1 is ``actor``."""
    if temperature == 1.0:
        return actor
    hot = copy.copy(actor)
    hot.logits = lambda obs: actor.logits(obs) / temperature
    return hot


def evaluate_policy(scenario: Scenario, network: Network, policy, seeds, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-episode metrics (as ``simulate``) of the policy run as the ``drl`` rule (a ``Model``
    is bound to the scenario as ``DRLRule.from_model`` binds it: N and trained ranges checked)."""
    if isinstance(policy, Model):
        rule = DRLRule.from_model(policy, scenario, network)
    else:
        actor = as_numpy_actor(policy)
        rule = DRLRule(actor, Observer(scenario, network, actor.obs_layout, actor.feature_scales))
    return simulate(scenario, network, list(seeds), rule, batch_size=batch_size)


def make_eval_fn(scenario: Scenario, network: Network, seeds) -> Callable[..., dict[str, Any]]:
    """``eval_fn(policy) -> {"success_rate", "success_rate_ci95_lo", ...}`` on fixed seeds; also
    accepts ``eval_fn(step, policy)`` (the offline callback's signature)."""
    seeds = list(seeds)

    def eval_fn(*args) -> dict[str, Any]:
        policy = args[-1]
        rate = evaluate_policy(scenario, network, policy, seeds)["success_rate"]
        mean, lo, hi = mean_ci95(rate)
        return {"success_rate": mean, "success_rate_ci95_lo": lo, "success_rate_ci95_hi": hi}

    return eval_fn
