"""Distilling point models into one generalist: a validation-only experiment, not the shipped
recipe (docs/learner.md, "Distilling point models").

A model trained at one point (N and the scenario's ranges) on one network carries to networks
it never saw; the generalist, trained across points, loses to it at 50 nodes and with large
tasks. This script tries to give the generalist what the point models know:

* ``point OUT NETWORK_SEED [KEY=VALUE ...]``: a point model in the generalist's form
  (observation v3, scorer, pooled critic) on one TRAINING network (seed >= 1000) of
  ``paper-sim`` with the overrides: ``slack-reliable`` tuned there on 10 validation episodes,
  logged on 300 episodes, AWR for 8000 steps, then 400 episodes of PPO (Alg. 2), all under the
  counterfactual credit. Writes OUT and OUT-offline.
* ``student OUT --point MODEL SETS ...``: the shipped generalist's offline phase (the tuned rule
  logged on 12 drawn networks x 30 episodes, AWR, decision credit) plus, for each point
  model, its own logs on ``--point-networks`` (1 to 16) other training networks, where the actor's loss is
  the cross-entropy to the point model's action probabilities on each logged state (policy
  distillation, Rusu et al. 2016) instead of AWR. SETS: the point's overrides, ';'-separated.
  ``--no-rule``: the point models' logs only. A teacher named twice gets twice the logs (other
  networks, other episodes).
* ``online START OUT EPISODES [HPARAM=VALUE ...]``: the shipped generalist's online rounds
  (8 episodes per drawn network, decision credit) from a saved student.

``student`` and ``online`` take ``--seed K`` (default 0, the seed of every run in the docs before
2026-12-04): the training seed, which draws the networks, the online episodes and the initial
weights. ``student --set HPARAM=VALUE ...`` changes the learner's settings as ``online``'s
HPARAM=VALUE does (e.g. ``'hidden=[64, 64]'``, a wider actor and critic).

Every model is scored with ``scripts/generalist_validation.py`` (validation networks 500, 501)
and checked with ``scripts/generalist_zero_shot.py`` (held-out points)."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from o2o.core import seeds
from o2o.core.decpomdp import OBS_LAYOUT_V3
from o2o.core.errors import UserError
from o2o.core.limits import check_memory, dataset_bytes
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.learn.distribution import Distribution, TeacherPlan
from o2o.learn.generalist import train_offline_across
from o2o.learn.nets import Actor
from o2o.learn.policy import Policy
from o2o.learn.settings import learner_settings
from o2o.models import hull_ranges, scenario_ranges

POINT_LOG_EPISODES, POINT_OFFLINE_STEPS, POINT_ONLINE_EPISODES = 300, 8000, 400


def settings(credit: str, online: list[str] = (), option: str = "HPARAM=VALUE"):
    return learner_settings("project", offline=["critic_input=pooled"], online=["critic_input=pooled", *online],
                            reward_credit=credit, obs_layout=OBS_LAYOUT_V3, options=(option, option))


def shipped_distribution() -> Distribution:
    return Distribution(load_scenario("paper-sim", []), (10, 50), (1000, 1999),
                        {"task_size_kb": (4000, 12000), "arrival_prob": (0.6, 1.0), "node_fail_rate": (0.1, 0.3)})


def offline_settings(learner):
    return learner.offline.model_copy(update={"hidden": learner.online.hidden, "actor_head": learner.online.actor_head})


def cmd_point(a) -> None:
    from o2o.experiments.tuning import tune_rule
    from o2o.learn.online import OnlinePPO
    from o2o.logs.dataset import simulated_dataset
    from o2o.schedulers import make_rule

    sc = load_scenario("paper-sim", a.sets)
    net = sample_network(sc, a.network_seed)
    learner, t0 = settings("counterfactual"), time.time()
    tuned = tune_rule(sc, net, "slack-reliable", network_seed=a.network_seed, episodes=10)
    data = simulated_dataset(sc, net, make_rule("slack-reliable", tuned["params"]),
                             seeds.LOGS.take(POINT_LOG_EPISODES), reward_credit="counterfactual",
                             obs_layout=OBS_LAYOUT_V3)
    policy = train_offline_across([data], offline_settings(learner), 0, POINT_OFFLINE_STEPS).at_nodes(net.n)
    del data
    where = {"nodes_range": (net.n, net.n), "trained_ranges": scenario_ranges(sc)}
    policy.save(a.out + "-offline", training={"phase": "point-offline", "tuned": tuned["params"]}, **where)
    algo = OnlinePPO(sc, net, learner.online, policy, 0)
    algo.train(POINT_ONLINE_EPISODES, show_progress=False)
    algo.policy.save(a.out, training={"phase": "point", "tuned": tuned["params"]}, **where)
    print(f"{a.out}: tuned {tuned['params']}, {time.time() - t0:.0f} s")


def cmd_student(a) -> None:
    from o2o.experiments.teacher import teacher_datasets
    from o2o.logs.dataset import simulated_dataset
    from o2o.schedulers.drl import DRLRule

    learner, t0 = settings("decision", a.set, "--set"), time.time()
    dist = shipped_distribution()
    # every point model and its logs' memory are checked before anything is drawn
    point_scenarios = [load_scenario("paper-sim", sets.split(";")) for _, sets in a.point]
    check_memory(a.point_networks * sum(dataset_bytes(sc, a.point_episodes, OBS_LAYOUT_V3) for sc in point_scenarios),
                 f"the point models' logs ({len(a.point)} models x {a.point_networks} networks x "
                 f"{a.point_episodes} episodes)", "use fewer --point-networks or --point-episodes")
    point_actors = [Policy.load(model, nodes=sc.nodes)[0].actor for (model, _), sc in zip(a.point, point_scenarios)]
    datasets, ranges = [], None
    if not a.no_rule:
        datasets, _, ranges = teacher_datasets(dist, TeacherPlan("slack-reliable", 12, 30, 5, a.steps), a.seed,
                                               "decision", show_progress=False)
    teachers: list[Actor | None] = [None] * len(datasets)
    rng = np.random.default_rng(0xD157 + a.seed)
    for j, ((model, _), sc, teacher) in enumerate(zip(a.point, point_scenarios, point_actors)):
        for k in range(a.point_networks):
            net = sample_network(sc, int(rng.integers(1000, 2000)))
            datasets.append(simulated_dataset(
                sc, net, DRLRule.from_model(model, sc, net),
                seeds.LOGS.take(a.point_episodes, 10_000 + (j * 16 + k) * a.point_episodes),
                reward_credit="decision", obs_layout=OBS_LAYOUT_V3))
            teachers.append(teacher)
            ranges = hull_ranges(ranges, scenario_ranges(sc))
    policy = train_offline_across(datasets, offline_settings(learner), a.seed, a.steps, teachers)
    policy.at_nodes(20).save(a.out, training={"phase": "generalist", "distilled_from": a.point, "seed": a.seed},
                             nodes_range=dist.nodes, trained_ranges=ranges)
    print(f"{a.out}: {len(teachers)} data sets, {a.steps} steps, {time.time() - t0:.0f} s")


def cmd_online(a) -> None:
    from o2o.learn.generalist import train_generalist

    learner, t0 = settings("decision", a.hparams), time.time()
    policy, model = Policy.load(a.start, nodes=20, need_critic=True)
    res = train_generalist(shipped_distribution(), learner.online, a.episodes, 8, a.seed, "decision",
                           show_progress=False, policy=policy)
    res.policy.at_nodes(20).save(a.out, training={"phase": "generalist", "start": a.start, "seed": a.seed},
                                 nodes_range=res.nodes_range,
                                 trained_ranges=hull_ranges(model.trained_ranges, res.trained_ranges))
    print(f"{a.out}: {res.episodes} online episodes, {time.time() - t0:.0f} s")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("point")
    q.add_argument("out")
    q.add_argument("network_seed", type=int)
    q.add_argument("sets", nargs="*")
    q = sub.add_parser("student")
    q.add_argument("out")
    q.add_argument("--point", nargs=2, action="append", required=True, metavar=("MODEL", "SETS"))
    q.add_argument("--point-networks", type=int, default=3)
    q.add_argument("--point-episodes", type=int, default=20)
    q.add_argument("--steps", type=int, default=20000)
    q.add_argument("--no-rule", action="store_true", help="the point models' logs only")
    q.add_argument("--seed", type=int, default=0, help="training seed: the networks drawn and the training")
    q.add_argument("--set", nargs="+", default=[], metavar="HPARAM=VALUE",
                   help="the learner's settings, as for online (e.g. 'hidden=[64, 64]')")
    q = sub.add_parser("online")
    q.add_argument("start")
    q.add_argument("out")
    q.add_argument("episodes", type=int)
    q.add_argument("hparams", nargs="*")
    q.add_argument("--seed", type=int, default=0, help="training seed: the rounds' draws and episodes")
    a = p.parse_args(argv)
    if a.cmd == "point" and a.network_seed < 1000:
        p.error("a point model trains on a training network: NETWORK_SEED >= 1000")
    if a.cmd == "student" and not (1 <= a.point_networks <= 16 and a.point_episodes >= 1):
        # each point model's logs take seeds from its own block of 16 networks
        p.error("--point-networks is 1 to 16 and --point-episodes at least 1")
    if getattr(a, "seed", 0) < 0:
        p.error(f"--seed is a training seed >= 0, got {a.seed}")
    torch.set_num_threads(1)
    try:
        {"point": cmd_point, "student": cmd_student, "online": cmd_online}[a.cmd](a)
    except UserError as err:   # a missing model, a bad override, not enough memory: one line, exit 2
        p.exit(2, f"{p.prog}: error: {err}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
