"""Running schedulers on batches of simulated episodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from o2o.core.episodes import Episodes, sample_episodes
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.schedulers.heuristics import Rule
from o2o.sim.engine import Engine
from o2o.sim.views import node_views, probe_answers


def rule_actions(engine: Engine, rule: Rule, probes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Destinations (B, N) chosen by a decentralized rule at the engine's current slot, and
    the probability the rule gave each (NaN where it is not defined or there is no task).
    ``probes`` (B,), when given, is added the probe requests each episode's deciding nodes
    sent: the nodes ``Rule.probe_targets`` names other than the deciding node itself (a node
    reads its own state without a request; paper IV-B2)."""
    state = engine.node_state()
    b, i = np.nonzero(engine.ep.has_task[:, engine.t, :])
    actions = np.full((engine.B, engine.N), engine.N, dtype=np.int64)
    probs = np.full((engine.B, engine.N), np.nan)
    if b.size:
        view = node_views(engine, state, b, i, rule.reads)
        if probes is not None:
            targets = rule.probe_targets(view)
            requests = targets.sum(axis=1) - targets[np.arange(b.size), i]
            np.add.at(probes, b, requests)
        chosen = rule.choose(view, probe_answers(engine, state, b))
        actions[b, i] = chosen
        p = rule.action_prob(view, chosen)
        if p is not None:
            probs[b, i] = p
    return actions, probs


FULL_INFORMATION = "full"   # the probes of a scheduler that reads every queue (central)


def probes_per_task(metrics: dict[str, np.ndarray]) -> float | str:
    """Probe requests (request/answer pairs to other nodes) per task, from the probes a rule
    sent in ``simulate``'s episodes; ``"full"`` for a scheduler that reads every queue
    without probing (the centralized reference)."""
    if "probes" not in metrics:
        return FULL_INFORMATION
    tasks = int(np.sum(metrics["tasks"]))
    return float(np.sum(metrics["probes"]) / tasks) if tasks else 0.0


@dataclass
class Rollout:
    """A finished batch: the engine (its per-task records) and per-step decisions."""

    engine: Engine
    actions: np.ndarray   # (B, T, N), N = no task
    action_prob: np.ndarray  # (B, T, N)
    probes: np.ndarray | None = None  # (B,) probe requests sent (a Rule's; None for others)


def rollout(scenario: Scenario, network: Network, episodes: Episodes, scheduler,
            on_step: Callable[[Engine, np.ndarray, np.ndarray], None] | None = None) -> Rollout:
    """Run ``scheduler`` (a Rule or anything with ``decide(engine) -> (actions, probs)``) over
    the whole batch; ``on_step(engine, actions, probs)`` is called before each step."""
    engine = Engine(scenario, network, episodes)
    B, T, N = engine.B, engine.T, engine.N
    all_actions = np.empty((B, T, N), dtype=np.int64)
    all_probs = np.empty((B, T, N))
    is_rule = isinstance(scheduler, Rule)
    probes = np.zeros(B, dtype=np.int64) if is_rule else None
    while not engine.done:
        if is_rule:
            actions, probs = rule_actions(engine, scheduler, probes)
        else:
            actions, probs = scheduler.decide(engine)
        all_actions[:, engine.t] = actions
        all_probs[:, engine.t] = probs
        if on_step is not None:
            on_step(engine, actions, probs)
        engine.step(actions)
    return Rollout(engine, all_actions, all_probs, probes)


def simulate(scenario: Scenario, network: Network, seeds, scheduler, batch_size: int = 64,
             progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Per-episode metrics (arrays of length len(seeds)) of ``scheduler`` on the given seeds;
    a decentralized rule's also ``probes``, the probe requests its nodes sent per episode."""
    seeds = list(seeds)
    parts: list[dict[str, np.ndarray]] = []
    for lo in range(0, len(seeds), batch_size):
        chunk = seeds[lo:lo + batch_size]
        episodes = sample_episodes(scenario, network, chunk)
        done = rollout(scenario, network, episodes, scheduler)
        metrics = done.engine.metrics()
        if done.probes is not None:
            metrics["probes"] = done.probes
        parts.append(metrics)
        if progress is not None:
            progress(len(chunk))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
