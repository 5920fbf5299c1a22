"""One model for any network: online PPO (Algorithm 2, paper IV-C3) across a distribution of
networks and sizes, with one actor and one critic whose weights do not depend on N.

The distribution and the teacher plan are in ``o2o.learn.distribution``.

The model is a scorer (``actor_head=scorer`` or ``set-scorer``) on observation v3 with the
pooled critic (``critic_input=pooled``): the actor scores each candidate from its own features,
the critic reads the node part and the mean and maximum over the candidates, and every feature
is a physical quantity over a constant of ``FeatureScales``, fixed before training (the
defaults, raised where the distribution reaches further: ``covering_scales``) and recorded in
the manifest. So the same weights are trained at every N and under every scenario drawn.

Each round draws, from the training seed's generator:

* N, uniformly among the whole numbers of ``nodes`` (e.g. 10..50, figure 6's range);
* a network seed, uniformly in ``network_seeds``, always >= ``FIRST_TRAINING_NETWORK``: network
  seeds below it are kept for evaluation (the docs' tables use 0, 1 and 2), so a model is never
  trained on a network it is compared on;
* for each swept field (``task_size_kb``, ``arrival_prob``, ``node_fail_rate``, as figures
  5a-c sweep them), the upper end of its range among ``LEVELS`` evenly spaced values of its
  ``upper_ends`` interval (with the defaults, exactly the figures' points: 4000..12000 KB,
  0.6..1.0, 0.1..0.3), the lower end the base scenario's;

then runs ``episodes_per_round`` online episodes there (one ``OnlinePPO``: the same weights,
Adam moments and episode seeds ``online(seed)`` go on from round to round, ``move_to``) and
moves on. Every round is drawn before training starts, so the same seed gives the same rounds
and, with one torch thread, the same weights. The model records ``nodes_range`` = ``nodes`` and
``trained_ranges`` = the hull of the drawn scenarios' ranges.

Offline first (optional, ``o2o.learn.distribution.TeacherPlan``): as O2O-DRL starts its online phase from an actor
trained on a heuristic's logs (paper IV-C), a generalist may start from one trained on the logs
of a rule across networks. ``o2o.experiments.teacher.teacher_datasets`` draws ``networks``
networks from the same distribution (a generator of their own), tunes the rule on each (grid
search on validation episodes of that network, as ``o2o tune``), logs it on ``episodes``
episodes, and ``train_offline_across`` runs the offline algorithm (advantage-weighted regression by default)
on all of them at once: each step one data set, drawn in proportion to its rows, and a
minibatch of it, the same scorer and pooled critic at every N. Without a plan the generalist
starts from a random actor and critic, as online-only does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from o2o.core.decpomdp import OBS_LAYOUT_V3, SCORER_HEADS, FeatureScales, covering_scales, critic_dim, obs_dim
from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.progress import progress_bar
from o2o.learn.distribution import Distribution
from o2o.learn.nets import Actor
from o2o.learn.offline import TRAINING_ARRAYS, AdvantageWeighted, normalize_rewards
from o2o.learn.online import OnlinePPO, initial_policy
from o2o.learn.policy import Policy
from o2o.learn.settings import OfflineSettings, OnlineSettings
from o2o.learn.tracking import Tracker
from o2o.models import hull_ranges, scenario_ranges

@dataclass
class GeneralistResult:
    """The trained policy, where it may run, and one record per round."""

    policy: Policy
    nodes_range: tuple[int, int]
    trained_ranges: dict[str, list[float]]
    feature_scales: FeatureScales
    rounds: list[dict[str, Any]]
    episodes: int
    seconds: float


def check_generalist_settings(settings: OnlineSettings) -> None:
    if settings.actor_head not in SCORER_HEADS:
        raise UserError(f"a generalist runs at any N: its actor must be a scorer (actor_head=scorer or "
                        f"set-scorer), not {settings.actor_head}")
    if settings.critic_input != "pooled":
        raise UserError(f"a generalist trains at every N with one critic: critic_input must be pooled, "
                        f"not {settings.critic_input}")


def train_generalist(dist: Distribution, settings: OnlineSettings, episodes: int,
                     episodes_per_round: int, seed: int = 0, reward_credit: str = "node",
                     tracker: Tracker | None = None, show_progress: bool = True,
                     policy: Policy | None = None) -> GeneralistResult:
    """Algorithm 2 across ``dist``: rounds of ``episodes_per_round`` episodes (the last one
    smaller if ``episodes`` is not a multiple), each on a newly drawn scenario and network.
    ``policy``: where it starts (e.g. ``train_offline_across``'s); default a random one."""
    check_generalist_settings(settings)
    dist.check()
    start = time.perf_counter()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6E4E]))
    n_rounds = -(-episodes // episodes_per_round)
    draws = [dist.draw(rng) for _ in range(n_rounds)]
    scales = covering_scales(dist.widest())
    scenarios = [dist.scenario(d["nodes"], {w: d[w] for w in dist.upper_ends}) for d in draws]
    torch.manual_seed(seed)
    if policy is None:
        policy = initial_policy(draws[0]["nodes"], settings, OBS_LAYOUT_V3, reward_credit, scales)
    else:
        check_start(policy, scales, reward_credit)
        policy = policy.at_nodes(draws[0]["nodes"])
    algo: OnlinePPO | None = None
    trained: dict[str, list[float]] | None = None
    rounds: list[dict[str, Any]] = []
    with progress_bar(total=episodes, desc="generalist", unit="episode", disable=not show_progress) as bar:
        for k, (draw, scenario) in enumerate(zip(draws, scenarios)):
            network = sample_network(scenario, draw["network_seed"])
            if algo is None:
                algo = OnlinePPO(scenario, network, settings, policy, seed)
            else:
                algo.move_to(scenario, network)
            before = algo.episodes_done
            result = algo.train(min(episodes, before + episodes_per_round), tracker=tracker,
                                show_progress=False, desc="generalist")
            trained = hull_ranges(trained, scenario_ranges(scenario))
            done = result.episodes - before
            rate = float(np.sum(result.episode_success[-done:]) / max(1, np.sum(result.episode_tasks[-done:])))
            rounds.append({"round": k, **draw, "episodes": done, "train_success_rate": rate})
            bar.set_postfix({"N": draw["nodes"], "train": f"{rate:.3f}"})
            bar.update(done)
    assert algo is not None and trained is not None
    return GeneralistResult(algo.policy, tuple(dist.nodes), trained, scales, rounds, algo.episodes_done,
                            time.perf_counter() - start)


def check_start(policy: Policy, scales: FeatureScales, reward_credit: str) -> None:
    """Refuse a starting policy the rounds cannot go on from: not a scorer with the pooled
    critic on v3, other feature scales, or another reward credit."""
    if not policy.any_nodes or policy.obs_layout != OBS_LAYOUT_V3:
        raise UserError(f"a generalist starts from a scorer with the pooled critic on {OBS_LAYOUT_V3}, not a "
                        f"{policy.actor.head} actor with a {policy.critic_input} critic on {policy.obs_layout}")
    if policy.actor.feature_scales != scales:
        raise UserError("the starting model has other feature scales than the distribution's: train both "
                        "with the same ranges")
    if policy.reward_credit != reward_credit:
        raise UserError(f"the starting model was trained with the {policy.reward_credit} credit, the rounds "
                        f"use {reward_credit}: give --reward-credit {policy.reward_credit}")


def train_offline_across(datasets: list[dict[str, np.ndarray]], settings: OfflineSettings, seed: int,
                         steps: int, teachers: list[Actor | None] | None = None) -> Policy:
    """The offline algorithm (Algorithm 1's place; AWR or BC in the project's settings) on data
    sets of several networks and N at once: one scorer actor and one pooled critic, each step on
    a minibatch of one data set drawn in proportion to its rows (seeded). The actor's candidate
    gather is rebuilt for each data set's N around the same weights.

    ``teachers``: one actor (or None) per data set; on a data set with one, the actor learns
    that actor's action probabilities (policy distillation, ``AdvantageWeighted.teacher``), e.g.
    a model trained at that data set's point (``scripts/generalist_distill.py``)."""
    from o2o.logs.dataset import check_dataset, dataset_obs_layout, dataset_reward_credit

    if not datasets:
        raise UserError("the offline phase needs at least one data set")
    if settings.actor_head not in SCORER_HEADS or settings.critic_input != "pooled":
        raise UserError("the offline phase of a generalist trains a scorer with the pooled critic")
    if settings.algorithm == "sac-cql":  # its Q networks have N + 1 outputs: one N only
        raise UserError("the offline phase of a generalist runs awr or bc (SAC + CQL's Q networks are "
                        "for one N): set algorithm=awr or algorithm=bc")
    data = [check_dataset(d) for d in datasets]
    for d in data:
        if dataset_obs_layout(d) != OBS_LAYOUT_V3:
            raise UserError(f"the offline phase of a generalist reads {OBS_LAYOUT_V3} data sets, "
                            f"not {dataset_obs_layout(d)}")
    teachers = teachers or [None] * len(data)
    if len(teachers) != len(data):
        raise UserError(f"{len(teachers)} teachers for {len(data)} data sets: give one (or None) per data set")
    for t in teachers:
        if t is not None and (t.head not in SCORER_HEADS or t.obs_layout != OBS_LAYOUT_V3
                              or t.feature_scales != FeatureScales()):
            raise UserError(f"a teacher reads what the generalist reads: a scorer on {OBS_LAYOUT_V3} at the "
                            f"default feature scales, not a {t.head} actor on {t.obs_layout}")
    credits = {dataset_reward_credit(d) for d in data}
    if len(credits) != 1:
        raise UserError(f"the data sets have different reward credits {sorted(credits)}")
    ns = [d["action_masks"].shape[1] - 1 for d in data]
    algo = AdvantageWeighted(settings, obs_dim(ns[0], OBS_LAYOUT_V3), ns[0] + 1, seed, critic_dim(ns[0], OBS_LAYOUT_V3, "pooled"))
    base = algo.actor
    base.obs_layout, base.feature_scales = OBS_LAYOUT_V3, FeatureScales()
    views, streams, stats = [], [], None
    for n, d in zip(ns, data):
        view = Actor(obs_dim(n, OBS_LAYOUT_V3), n + 1, base.hidden, head=base.head,
                     feature_scales=base.feature_scales, obs_layout=OBS_LAYOUT_V3, rule_prior=base.rule_prior)
        view.net = base.net
        rewards, stats_d = normalize_rewards(d["rewards"], settings.reward_norm)
        stats = stats or stats_d
        t = {k: torch.from_numpy(np.ascontiguousarray(d[k])) for k in TRAINING_ARRAYS}
        t["rewards"] = torch.from_numpy(rewards)
        algo.actor = view  # the minibatches of this data set gather its N's candidates
        views.append(view)
        streams.append(algo.minibatches(t, t["actions"].shape[0]))
    rows = np.array([d["actions"].shape[0] for d in data], dtype=float)
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 0xAC05])).choice(
        len(data), size=steps, p=rows / rows.sum())
    for j in order:
        algo.actor, algo.teacher = views[j], teachers[j]
        algo.update(next(streams[j]))
    algo.actor, algo.teacher = base, None
    return Policy(base, algo.critic, credits.pop(), stats)
