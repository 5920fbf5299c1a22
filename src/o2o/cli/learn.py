"""``o2o train offline``, ``o2o train online``, ``o2o evaluate`` and ``o2o bench actor``.

The training handlers import the PyTorch side of the learner when they run, not when the
command line starts, so that commands without training (``o2o simulate``, a testbed node) start
without loading PyTorch.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from o2o.cli.common import (
    COUNT,
    SEED,
    TRAINING_SEED,
    WORKERS,
    add_scenario_args,
    at_least,
    compare_schedulers,
    reward_credit_arg,
)
from o2o.core import seeds
from o2o.core.episodes import sample_episodes
from o2o.core.errors import UserError
from o2o.core.limits import check_simulation
from o2o.core.metrics import json_safe, mean_ci95
from o2o.core.network import sample_network
from o2o.core.outputs import check_output_folder, write_error
from o2o.core.scenario import MAX_NODES, load_scenario
from o2o.learn.evaluate import evaluate_policy, make_eval_fn
from o2o.learn.settings import GENERALIST_FINETUNE, learner_settings
from o2o.learn.tracking import Tracker
from o2o.logs.dataset import dataset_reward_credit, load_dataset
from o2o.models import check_scenario_fits, hull_ranges, load_model, scenario_ranges
from o2o.schedulers.drl import DRLRule
from o2o.sim import SCHEDULERS, make_scheduler
from o2o.sim.engine import Engine
from o2o.sim.rollout import rule_actions
from o2o.sim.views import node_views, probe_answers

NODES = at_least(2, MAX_NODES)  # a number of nodes
# Evaluation episodes simulated at once (the batch of ``o2o.learn.evaluate.evaluate_policy``
# and of the table of ``o2o evaluate``).
EVAL_BATCH_EPISODES = 64


def _torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(n)))


def _scenario_network(args, batch: int = 1):
    """The scenario and its network, refused first if ``batch`` episodes of it at once (the
    most this command simulates together) would not fit in memory."""
    scenario = load_scenario(args.scenario, args.overrides)
    check_simulation(scenario, batch)
    return scenario, sample_network(scenario, args.network_seed)


def _eval_batch(episodes: int) -> int:
    return min(EVAL_BATCH_EPISODES, max(1, episodes))


def _log_dir(args, out: str) -> Path | None:
    if args.log_dir:
        return Path(args.log_dir)
    if "://" not in out:  # a local model folder keeps its training metrics beside the weights
        return Path(out) / "logs"
    return None


def _eval_seeds(args) -> list[int]:
    if args.eval_episodes < 0:
        raise UserError("--eval-episodes must be >= 0")
    return [args.eval_seed + k for k in range(args.eval_episodes)]


def _check_outputs(args) -> None:
    """The model folder and the metrics folder, refused before any training if unwritable."""
    check_output_folder(args.out, "--out")
    check_output_folder(args.log_dir, "--log-dir")


def _save_policy(policy, out: str, training: dict, where: dict) -> dict:
    try:
        return policy.save(out, training=training, **where)
    except OSError as exc:
        raise write_error(exc, out, "--out") from None


def _where(args, network, base=None, trained_ranges=None) -> dict:
    """Where the trained model may run: ``nodes_range`` (--nodes-range; default the base
    model's, or [N, N]) and ``trained_ranges`` (the training scenario's, with the base model's).
    A range other than [N, N] is refused before training unless the actor's weights do not
    depend on N (a scorer head on o2o-obs-v3)."""
    rng = args.nodes_range or (list(base.nodes_range) if base is not None else [network.n, network.n])
    return {"nodes_range": tuple(rng), "trained_ranges": hull_ranges(
        base.trained_ranges if base is not None else None, trained_ranges)}


def _check_nodes_range(args, network, layout: str, head: str) -> None:
    if not args.nodes_range:
        return
    from o2o.models import node_range_refusal

    why = node_range_refusal(layout, head, network.n, *args.nodes_range)
    if why:
        raise UserError(f"--nodes-range {args.nodes_range[0]} {args.nodes_range[1]} {why}")


def _settings(args, phase: str):
    """The learner's settings: a preset, then this command's overrides of ``phase``."""
    return learner_settings(args.settings, **{phase: args.hparams},
                            reward_credit=getattr(args, "reward_credit", None),
                            obs_layout=getattr(args, "obs_layout", None))


def cmd_train_offline(args) -> int:
    from o2o.learn.offline import train_offline

    _torch_threads(args.threads)
    _check_outputs(args)
    learner = _settings(args, "offline")
    args.steps = learner.offline_steps if args.steps is None else args.steps
    scenario, network = _scenario_network(args, _eval_batch(args.eval_episodes))
    settings = learner.offline
    data = load_dataset(args.dataset, n=network.n)
    from o2o.logs.dataset import dataset_obs_layout

    _check_nodes_range(args, network, dataset_obs_layout(data), settings.actor_head)
    eval_seeds = _eval_seeds(args)
    eval_fn = make_eval_fn(scenario, network, eval_seeds) if eval_seeds and settings.eval_every else None
    with Tracker(_log_dir(args, args.out)) as tracker:
        result = train_offline(data, settings, seed=args.seed, steps=args.steps, callback=eval_fn,
                               tracker=tracker, show_progress=not args.json)
    training = {"phase": "offline", "algorithm": "discrete SAC + CQL + V (Alg. 1)",
                "seed": args.seed, "steps": result.steps, "seconds": round(result.seconds, 2),
                "rows": int(data["actions"].shape[0]), "dataset": str(args.dataset),
                "settings": settings.model_dump(mode="json"),
                "scenario": scenario.name, "network_seed": args.network_seed}
    return _save_evaluate_report(args, scenario, network, result, training, eval_seeds,
                                 {"steps": result.steps, "reward_credit": dataset_reward_credit(data)},
                                 "offline", _where(args, network, trained_ranges=scenario_ranges(scenario)))


def cmd_train_online(args) -> int:
    from o2o.learn.online import train_online
    from o2o.learn.policy import Policy

    _torch_threads(args.threads)
    if bool(args.model) == bool(args.from_scratch):
        raise UserError("give either --model MODEL_DIR (fine-tune an offline model) or "
                        "--from-scratch (the online-only baseline)")
    _check_outputs(args)
    learner = _settings(args, "online")
    settings = learner.online
    scenario, network = _scenario_network(args, max(settings.episodes_per_batch,
                                                    _eval_batch(args.eval_episodes)))
    policy, model, source = None, None, "scratch"
    credit = args.reward_credit or (None if args.model else learner.reward_credit)
    generalist_defaults = None
    if args.model:
        policy, model = Policy.load(args.model, nodes=network.n, need_critic=True)
        check_scenario_fits(model, scenario)
        source = model.url
        if model.manifest.get("training", {}).get("phase") == "generalist" and not args.plain:
            # A generalist on a new network: the fine-tuning settings chosen for it, under the
            # command's own overrides (docs/learner.md, "Deploy without logs").
            generalist_defaults = {"online": list(GENERALIST_FINETUNE["online"]),
                                   "reward_credit": GENERALIST_FINETUNE["reward_credit"]}
            learner = learner_settings(args.settings, online=[*generalist_defaults["online"], *args.hparams],
                                       obs_layout=getattr(args, "obs_layout", None))
            settings = learner.online
            credit = args.reward_credit or generalist_defaults["reward_credit"]
        if settings.reward_norm == "fixed" and not policy.reward_stats:
            raise UserError(f"model {args.model} carries no reward statistics; use "
                            "--set-hparam reward_norm=batch")
    _check_nodes_range(args, network, policy.obs_layout if policy else learner.obs_layout,
                       policy.actor.head if policy else settings.actor_head)
    eval_seeds = _eval_seeds(args)
    eval_fn = make_eval_fn(scenario, network, eval_seeds) if eval_seeds and args.eval_every else None
    with Tracker(_log_dir(args, args.out)) as tracker:
        result = train_online(scenario, network, policy, settings, args.episodes, args.seed,
                              args.eval_every, eval_fn, tracker, show_progress=not args.json,
                              reward_credit=credit, obs_layout=learner.obs_layout)
    training = {"phase": "online" if args.model else "online-only",
                "algorithm": "PPO + GAE (Alg. 2)", "from": source, "seed": args.seed,
                "episodes": result.episodes, "seconds": round(result.seconds, 2),
                "settings": settings.model_dump(mode="json"),
                "scenario": scenario.name, "network_seed": args.network_seed}
    if generalist_defaults:
        training["generalist_finetune_defaults"] = generalist_defaults
    curve = [{k: p[k] for k in ("episodes", "success_rate")} for p in result.curve]
    return _save_evaluate_report(args, scenario, network, result, training, eval_seeds,
                                 {"episodes": result.episodes,
                                  "reward_credit": result.policy.reward_credit, "curve": curve},
                                 "online", _where(args, network, model, scenario_ranges(scenario)))


def _finite(text: str) -> float:
    value = float(text)  # a ValueError: argparse says "invalid float value"
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


_finite.__name__ = "float"
# The options of ``o2o train generalist`` that set a swept field's upper ends.
UPPER_END_OPTIONS = {"task_size_kb": "--task-size-max", "arrival_prob": "--arrival-max",
                     "node_fail_rate": "--fail-rate-max"}


def cmd_train_generalist(args) -> int:
    from o2o.learn.distribution import Distribution
    from o2o.learn.generalist import train_generalist

    _torch_threads(args.threads)
    _check_outputs(args)
    learner = learner_settings(args.settings, offline=["critic_input=pooled", *args.set_offline],
                               online=["critic_input=pooled", *args.hparams],
                               reward_credit=args.reward_credit, obs_layout="o2o-obs-v3",
                               options=("--set-offline", "--set-hparam"))
    if args.set_offline and not args.teacher:
        raise UserError("--set-offline sets the offline phase, which runs only with --teacher RULE")
    if args.teacher_grid != "shipped" and not args.teacher:
        raise UserError("--teacher-grid is the grid the teacher is tuned on, which runs only with --teacher RULE")
    settings = learner.online
    dist = Distribution(load_scenario(args.scenario, args.overrides), tuple(args.nodes),
                        tuple(args.network_seeds),
                        {what: tuple(getattr(args, opt[2:].replace("-", "_")))
                         for what, opt in UPPER_END_OPTIONS.items()})
    dist.check({"nodes": "--nodes", "network_seeds": "--network-seeds", **UPPER_END_OPTIONS})
    check_simulation(dist.widest(), settings.episodes_per_batch)
    from o2o.learn.generalist import check_generalist_settings

    check_generalist_settings(settings)
    per_round = args.episodes_per_round or settings.episodes_per_batch
    start, teacher = None, None
    if args.teacher:
        from o2o.experiments.teacher import teacher_datasets
        from o2o.learn.distribution import TeacherPlan
        from o2o.learn.generalist import train_offline_across

        plan = TeacherPlan(args.teacher, args.teacher_networks, args.teacher_episodes,
                           args.teacher_tune_episodes, args.offline_steps, args.teacher_grid)
        plan.check()
        began = time.perf_counter()
        datasets, records, teacher_ranges = teacher_datasets(dist, plan, args.seed, learner.reward_credit,
                                                             show_progress=not args.json)
        logged_s = time.perf_counter() - began
        offline = learner.offline.model_copy(update={"hidden": settings.hidden, "actor_head": settings.actor_head})
        start = train_offline_across(datasets, offline, args.seed, plan.steps)
        teacher = {"rule": plan.rule, "networks": records, "episodes_per_network": plan.episodes,
                   "tune_episodes": plan.tune_episodes, "tune_grid": plan.grid, "offline_steps": plan.steps,
                   "offline_algorithm": learner.offline.algorithm,
                   "offline_settings": offline.model_dump(mode="json"),
                   "logging_seconds": round(logged_s, 2),
                   "offline_seconds": round(time.perf_counter() - began - logged_s, 2)}
    with Tracker(_log_dir(args, args.out)) as tracker:
        result = train_generalist(dist, settings, args.episodes, per_round, args.seed,
                                  learner.reward_credit, tracker, show_progress=not args.json,
                                  policy=start)
    if teacher is not None:  # trained offline on the teacher's scenarios too
        result.trained_ranges = hull_ranges(result.trained_ranges, teacher_ranges)
    training = {"phase": "generalist", "algorithm": "PPO + GAE (Alg. 2) across networks",
                "teacher": teacher,
                "seed": args.seed, "episodes": result.episodes, "episodes_per_round": per_round,
                "seconds": round(result.seconds, 2), "settings": settings.model_dump(mode="json"),
                "scenario": dist.base.name, "nodes": list(dist.nodes),
                "network_seeds": list(dist.network_seeds),
                "upper_ends": {k: list(v) for k, v in dist.upper_ends.items()},
                "rounds": result.rounds}
    manifest = _save_policy(result.policy, args.out, training,
                            {"nodes_range": result.nodes_range, "trained_ranges": result.trained_ranges})
    out = {"model": args.out, "sha256": manifest["sha256"], "episodes": result.episodes,
           "rounds": len(result.rounds), "nodes_range": list(result.nodes_range),
           "trained_ranges": result.trained_ranges, "seconds": round(result.seconds, 2)}
    total = result.seconds
    if teacher is not None:  # the whole training time, and each phase's
        total += teacher["logging_seconds"] + teacher["offline_seconds"]
        out.update({"seconds": round(total, 2), "online_seconds": round(result.seconds, 2),
                    "teacher_logging_seconds": teacher["logging_seconds"],
                    "offline_seconds": teacher["offline_seconds"]})
    # Upper ends the draws never reached: the model refuses scenarios beyond what it saw.
    short = {what: [result.trained_ranges[what][1], hi] for what, (_, hi) in dist.upper_ends.items()
             if result.trained_ranges[what][1] < hi}
    if short:
        out["upper_ends_not_reached"] = short
    _report(args, out, f"generalist model written to {args.out} (training time {total:.1f} s)")
    return 0


def _save_evaluate_report(args, scenario, network, result, training: dict, eval_seeds, extra: dict,
                          phase: str, where: dict) -> int:
    """Save the trained policy to --out, evaluate it on the evaluation episodes (if any) and
    print the outcome; shared by ``train offline`` and ``train online``."""

    manifest = _save_policy(result.policy, args.out, training, where)
    out = {"model": args.out, "sha256": manifest["sha256"], **extra,
           "seconds": round(result.seconds, 2)}
    if eval_seeds:
        rate = evaluate_policy(scenario, network, result.policy.actor, eval_seeds)["success_rate"]
        mean, lo, hi = mean_ci95(rate)
        out.update({"success_rate": mean, "ci95": [lo, hi]})
    _report(args, out, f"{phase} model written to {args.out}")
    return 0


def _report(args, out: dict, headline: str) -> None:
    if args.json:
        print(json.dumps(json_safe(out)))
        return
    print(headline)
    for k, v in out.items():
        if k in ("model", "curve"):
            continue
        print(f"  {k}: {v}")
    for point in out.get("curve", []):
        print(f"  after {point['episodes']:>6} episodes: success rate {point['success_rate']:.4f}")


def cmd_evaluate(args) -> int:
    if not args.model and not args.scheduler:
        raise UserError("give at least one --model MODEL_DIR (or a --scheduler to compare with)")
    if args.name and len(args.name) > len(args.model or []):
        raise UserError(f"{len(args.name)} --name values for {len(args.model or [])} --model; "
                        "give one --name per --model, in order")
    scenario, network = _scenario_network(args, _eval_batch(args.episodes))
    episode_seeds = [args.seed + k for k in range(args.episodes)]
    models = args.model or []
    names = [args.name[k] if args.name and k < len(args.name) else
             ("drl" if len(models) == 1 else f"drl:{url}") for k, url in enumerate(models)]
    names += args.scheduler or []
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"{', '.join(twice)} would be a row of the table twice; give each --model "
                        "and --scheduler once, and --name values that differ")
    from o2o.experiments.tuning import load_tuned_files, summary

    tuned = load_tuned_files(args.tuned, scenario, args.network_seed)
    missing = sorted(set(tuned) - set(args.scheduler or []))
    if missing:
        raise UserError(f"--tuned gives values for {', '.join(missing)}; add --scheduler for it")
    rules = {}
    for name in args.scheduler or []:
        rules[name] = make_scheduler(name, tuned[name]["params"] if name in tuned else None)
    for name, url in zip(names, models):
        rules[name] = DRLRule.from_model(load_model(url, nodes=network.n), scenario, network)
    # The table lists the models first, then the heuristics, as they were given.
    rules = {name: rules[name] for name in names}
    return compare_schedulers(scenario, network, rules, episode_seeds,
                              network_seed=args.network_seed, as_json=args.json,
                              tuned={k: summary(v) for k, v in tuned.items()})


def cmd_bench_actor(args) -> int:
    scenario, network = _scenario_network(args)
    rule = DRLRule.from_model(load_model(args.model, nodes=network.n), scenario, network)
    engine = Engine(scenario, network, sample_episodes(scenario, network, [0]))
    for _ in range(5):  # a few slots in, so queues are not empty
        engine.step(rule_actions(engine, rule)[0])
    state = engine.node_state()
    b, i = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    view = node_views(engine, state, b, i, rule.reads)
    probes = probe_answers(engine, state, b)
    rule.choose(view, probes)
    best = {"wall": float("inf"), "cpu": float("inf")}
    for _ in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.decisions):
            rule.choose(view, probes)
        best["wall"] = min(best["wall"], (time.perf_counter() - start) / args.decisions)
        best["cpu"] = min(best["cpu"], (time.process_time() - cpu) / args.decisions)
    out = {"seconds_per_decision": best["wall"], "microseconds_per_decision": best["wall"] * 1e6,
           "cpu_microseconds_per_decision": best["cpu"] * 1e6,
           "obs_layout": rule.observer.obs_layout, "actor_head": rule.actor.head}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"drl actor (numpy, {rule.actor.head} head, {rule.observer.obs_layout}), one decision "
              f"(observation, mask, forward, sample): {best['wall'] * 1e6:.1f} us wall clock, "
              f"{best['cpu'] * 1e6:.1f} us of CPU")
    return 0


def cmd_bench_learn(args) -> int:
    from o2o.learn.speed import learner_speed

    scenario, network = _scenario_network(args)
    settings = {name: learner_settings(name) for name in ("paper", "project")}
    out = learner_speed(scenario, network, settings, offline_steps=args.offline_steps)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"learner throughput on {scenario.name} (N = {network.n}), one torch thread, best of "
          "several runs, per CPU second")
    for name, v in out["offline_steps_per_s"].items():
        print(f"  offline gradient steps/s, batch 512, {name} settings: {v:8.1f}")
    for name, v in out["online_episodes_per_s"].items():
        print(f"  online episodes/s, {name} settings: {v['iteration']:6.2f} (collection alone "
              f"{v['collect']:6.2f})")
    for name, v in out["env_node_slots_per_s"].items():
        print(f"  env node-slots/s, {name}: {v:12,.0f}")
    return 0


def add_settings_arg(p) -> None:
    p.add_argument("--settings", choices=["project", "paper"], default="project",
                   help="hyper-parameters to start from: the paper's (V-A) or the project's changes "
                        "to them (docs/learner.md; default project), before any override")


def add_reward_credit_arg(p, what: str) -> None:
    p.add_argument("--reward-credit", type=reward_credit_arg, default=None,
                   metavar="{slot,decision,node,counterfactual[-w<w>]}",
                   help=f"how outcomes become rewards: the team's in the slot they ended, or in "
                        f"the slot of the task's decision, or each node's own at its decision "
                        f"(node), or that minus w times the harm the decision imposed on the "
                        f"other tasks (counterfactual, w = 1; counterfactual-w0.5: w = 0.5) ({what})")


def add_obs_layout_arg(p, what: str) -> None:
    from o2o.core.decpomdp import obs_layout_option

    p.add_argument("--obs-layout", type=obs_layout_option, default=None, metavar="LAYOUT",
                   help=f"observation layout: the paper's (o2o-obs-v1), v1 plus what a node probes at "
                        f"its decision (o2o-obs-v2), the same in fixed physical scales with nothing "
                        f"but the candidates growing with N (o2o-obs-v3), or v3 where a node probes "
                        f"only k peers (o2o-obs-v3-k<k>, 1 <= k <= N-1) ({what})")


def _add_common_train(p) -> None:
    add_scenario_args(p)
    add_settings_arg(p)
    p.add_argument("--out", required=True, metavar="MODEL_DIR",
                   help="model folder to write (local path or fsspec URL, e.g. memory://m)")
    p.add_argument("--seed", type=TRAINING_SEED, default=0, help="training seed (default 0)")
    p.add_argument("--set-hparam", dest="hparams", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyper-parameter, value read as YAML (repeatable)")
    p.add_argument("--eval-episodes", type=at_least(0), default=10,
                   help="held-out episodes to evaluate on (default 10; 0: none)")
    p.add_argument("--eval-seed", type=SEED, default=seeds.TEST.start,
                   help=f"first evaluation episode seed (default {seeds.TEST.start}, the held-out "
                        "range, which no log or training episode uses)")
    p.add_argument("--log-dir", help="metrics.jsonl and TensorBoard folder (default MODEL_DIR/logs)")
    p.add_argument("--threads", type=WORKERS, default=1, help="torch threads (default 1)")
    p.add_argument("--nodes-range", type=at_least(2), nargs=2, metavar=("LO", "HI"), default=None,
                   help="numbers of nodes the model may run at, recorded in its manifest (default: "
                        "the training N; a wider range only for a scorer head on o2o-obs-v3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(sub, bench) -> None:
    train = sub.add_parser("train", help="train O2O-DRL models (offline from logs, online)")
    tsub = train.add_subparsers(dest="phase", metavar="PHASE")
    tsub.required = True

    p = tsub.add_parser("offline", help="offline training from a data set with the settings' algorithm (project: "
                        "advantage-weighted regression + V; paper: Algorithm 1, discrete SAC + CQL + V)")
    p.add_argument("--dataset", required=True, help=".npz data set of transitions (see docs/logs.md)")
    p.add_argument("--steps", type=COUNT, default=None,
                   help="gradient steps (default: the settings', project 2000, paper 10000)")
    _add_common_train(p)
    p.set_defaults(func=cmd_train_offline)

    p = tsub.add_parser("online", help="Algorithm 2: PPO + GAE fine-tuning in the simulator")
    p.add_argument("--model", metavar="MODEL_DIR", help="offline model (actor and critic) to fine-tune")
    p.add_argument("--from-scratch", action="store_true",
                   help="start from a random actor and critic (the online-only baseline)")
    p.add_argument("--episodes", type=COUNT, required=True, help="training episodes")
    p.add_argument("--eval-every", type=at_least(0), default=0, metavar="EPISODES",
                   help="evaluate every so many episodes (default 0: only at the end)")
    add_reward_credit_arg(p, "default: the model's; from scratch, the settings' "
                             "(project: node, paper: slot)")
    add_obs_layout_arg(p, "from scratch; default the settings' (project: v2, paper: v1)")
    p.add_argument("--plain", action="store_true",
                   help="fine-tune a generalist (a model of 'o2o train generalist') with the settings "
                        "as they are, without its fine-tuning defaults (" +
                        " ".join(f"--set-hparam {k}" for k in GENERALIST_FINETUNE["online"]) +
                        f", --reward-credit {GENERALIST_FINETUNE['reward_credit']})")
    _add_common_train(p)
    p.set_defaults(func=cmd_train_online)

    from o2o.learn.distribution import NETWORK_SEEDS, NODES as GENERALIST_NODES, UPPER_ENDS, TeacherPlan
    from o2o.learn.settings import ONLINE_EPISODES

    p = tsub.add_parser("generalist", help="Algorithm 2 across networks and sizes: one o2o-obs-v3 "
                        "scorer model with the pooled critic, for any N and scenario in its ranges")
    p.add_argument("--scenario", default="paper-sim",
                   help="base scenario: preset name or YAML file (default paper-sim); every field "
                        "but N and the swept upper ends is its")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the base scenario, value read as YAML (repeatable)")
    add_settings_arg(p)
    p.add_argument("--out", required=True, metavar="MODEL_DIR",
                   help="model folder to write (local path or fsspec URL, e.g. memory://m)")
    p.add_argument("--episodes", type=COUNT, default=ONLINE_EPISODES,
                   help=f"online training episodes in all (default {ONLINE_EPISODES})")
    p.add_argument("--episodes-per-round", type=COUNT, default=None,
                   help="episodes on each drawn network before the next draw (default: the "
                        "settings' episodes_per_batch, one PPO update)")
    p.add_argument("--nodes", type=NODES, nargs=2, metavar=("LO", "HI"), default=list(GENERALIST_NODES),
                   help=f"N is drawn uniformly in [LO, HI] each round (default {GENERALIST_NODES[0]} "
                        f"{GENERALIST_NODES[1]}); the model's nodes_range")
    p.add_argument("--network-seeds", type=SEED, nargs=2, metavar=("LO", "HI"), default=list(NETWORK_SEEDS),
                   help=f"training network seeds, drawn uniformly in [LO, HI] (default {NETWORK_SEEDS[0]} "
                        f"{NETWORK_SEEDS[1]}; seeds below 1000 are kept for evaluation)")
    for what, opt in UPPER_END_OPTIONS.items():
        lo, hi = UPPER_ENDS[what]
        p.add_argument(opt, type=_finite, nargs=2, metavar=("LO", "HI"), default=[lo, hi],
                       help=f"the upper end of {what}'s range is drawn among 5 evenly spaced values "
                            f"of [LO, HI] (default {lo:g} {hi:g}, the figures' points)")
    p.add_argument("--seed", type=TRAINING_SEED, default=0,
                   help="training seed: the draws, the initial weights and the episodes (default 0)")
    p.add_argument("--set-hparam", dest="hparams", action="append", default=[], metavar="KEY=VALUE",
                   help="override an online hyper-parameter, value read as YAML (repeatable)")
    add_reward_credit_arg(p, "default: the settings' (project: node, paper: slot)")
    p.add_argument("--teacher", default=None, metavar="RULE",
                   help="offline phase first: tune RULE (slack-reliable or spread) on each of "
                        "--teacher-networks networks drawn like the rounds, log it there, and train "
                        "the actor and critic offline on all those logs at once before the online "
                        "rounds (default: none, online only from a random actor)")
    p.add_argument("--teacher-networks", type=COUNT, default=TeacherPlan.networks,
                   help=f"networks the teacher is logged on (default {TeacherPlan.networks})")
    p.add_argument("--teacher-episodes", type=COUNT, default=TeacherPlan.episodes,
                   help=f"logged episodes per network (default {TeacherPlan.episodes})")
    p.add_argument("--teacher-tune-episodes", type=COUNT, default=TeacherPlan.tune_episodes,
                   help=f"validation episodes the teacher is tuned on, per network (default "
                        f"{TeacherPlan.tune_episodes})")
    p.add_argument("--teacher-grid", choices=["shipped", "wide"], default=TeacherPlan.grid,
                   help="the grid the teacher is tuned on: shipped (o2o tune's, default) or wide "
                        "(slack-reliable only: 576 candidates, sharper draws)")
    p.add_argument("--offline-steps", type=COUNT, default=TeacherPlan.steps,
                   help=f"offline steps on the teacher's logs (default {TeacherPlan.steps})")
    p.add_argument("--set-offline", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyper-parameter of the offline phase (with --teacher), value "
                        "read as YAML (repeatable)")
    p.add_argument("--log-dir", help="metrics.jsonl and TensorBoard folder (default MODEL_DIR/logs)")
    p.add_argument("--threads", type=WORKERS, default=1, help="torch threads (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_train_generalist)

    p = sub.add_parser("evaluate", help="run models (as the drl scheduler) and heuristics on the same episodes")
    add_scenario_args(p)
    p.add_argument("--model", action="append", metavar="MODEL_DIR", help="model folder or store (repeatable)")
    p.add_argument("--name", action="append", metavar="NAME",
                   help="table name for each --model, in order (at most one per --model)")
    p.add_argument("--scheduler", action="append", metavar="NAME",
                   help=f"heuristics and planners to compare with: {', '.join(SCHEDULERS)} (repeatable)")
    p.add_argument("--tuned", action="append", default=[], metavar="FILE",
                   help="a file of 'o2o tune' for a --scheduler: compared with its tuned values (repeatable)")
    p.add_argument("--episodes", type=COUNT, default=10, help="episodes to run (default 10)")
    p.add_argument("--seed", type=SEED, default=seeds.TEST.start,
                   help=f"first episode seed (default {seeds.TEST.start}, the held-out range)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    b = bench.add_parser("learn", help="learner throughput: offline steps/s, online episodes/s, "
                         "environment node-slots/s")
    add_scenario_args(b)
    b.add_argument("--offline-steps", type=COUNT, default=200,
                   help="steps per timed offline run (default 200)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=cmd_bench_learn)

    a = bench.add_parser("actor", help="time of one drl decision with the numpy actor")
    add_scenario_args(a)
    a.add_argument("--model", required=True, metavar="MODEL_DIR", help="model folder or store to time")
    a.add_argument("--decisions", type=COUNT, default=2000,
                   help="decisions per timed repeat (default 2000)")
    a.add_argument("--repeats", type=COUNT, default=3, help="timed repeats, best kept (default 3)")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(func=cmd_bench_actor)
