"""``o2o run`` (the main job, ``o2o.experiments.main_job``), ``o2o ablation`` and ``o2o report``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from o2o.cli.common import COUNT, TRAINING_SEEDS, WORKERS, add_scenario_args, at_least
from o2o.cli.learn import add_obs_layout_arg, add_reward_credit_arg, add_settings_arg
from o2o.core.decpomdp import OBS_LAYOUT_V2
from o2o.core.errors import UserError
from o2o.core.limits import (
    check_counts,
    check_memory,
    check_simulation,
    check_workers,
    dataset_bytes,
)
from o2o.core.metrics import json_safe
from o2o.core.outputs import check_output_folder
from o2o.core.scenario import load_scenario
from o2o.experiments.executors import cpu_count
from o2o.learn.settings import learner_settings
from o2o.logs.collect import LOG_BATCH_EPISODES
from o2o.schedulers import HEURISTICS


def cmd_report(args) -> int:
    from o2o.experiments.main_job import rebuild_report
    from o2o.experiments.marl.results import add_marl_rows, check_marl_folders, load_results

    for folder in args.marl:
        load_results(folder)
    saved = Path(args.run) / "results.json"
    if args.marl and saved.exists():  # a result of other episodes is refused before any rewrite
        try:
            run = json.loads(saved.read_text())
            scenario, network_seed, eval_seeds = run["scenario"], run["network_seed"], run["evaluation_seeds"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{saved} is not the results file of a finished 'o2o run' ({exc!r})") from None
        check_marl_folders(args.marl, scenario, network_seed, eval_seeds)
    log = (lambda _msg: None) if args.json else print
    report = rebuild_report(Path(args.run), log=log)
    report = add_marl_rows(Path(args.run), report, args.marl, log=log)
    paired = report["o2o-drl"]["paired"]
    marl = {method: r["o2o_minus"] for method, r in report.get("marl", {}).items()}
    if args.json:
        print(json.dumps(json_safe({**paired, **marl})))
    else:
        print("O2O-DRL minus each method, paired per episode (95% CI):")
        width = max(map(len, [*paired, *marl]), default=0)   # names up to central-earliest, marl-...
        for method, d in [*paired.items(), *marl.items()]:
            print(f"  {method:{width}s} {d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]")
    return 0


def _plan(args, scenario, obs_layout: str):
    """The plan (full or quick) with the sizes given on the command line, refused before
    anything is written if its logged batches or its data set (loaded by every worker) would
    not fit in memory."""
    from o2o.experiments.main_job import PLANS

    changes = {k: getattr(args, k) for k in ("seeds", "log_episodes", "offline_steps",
                                                "online_episodes", "eval_episodes")
               if getattr(args, k) is not None}
    plan = PLANS["quick" if args.quick else "full"].scaled(**changes)
    check_counts(asdict(plan), options=True)
    check_simulation(scenario, LOG_BATCH_EPISODES)
    data = dataset_bytes(scenario, plan.log_episodes, obs_layout)
    check_memory(data, f"a data set of {plan.log_episodes} logged episodes of {scenario.nodes} nodes",
                 "use fewer --log-episodes, fewer nodes or slots")
    workers = min(plan.seeds, args.workers or cpu_count())
    check_workers(workers, f"training seeds, each loading a data set of {data / 2**30:.1f} GiB",
                  data_bytes=data)
    return plan


def cmd_run(args) -> int:
    from o2o.experiments.main_job import run_pipeline
    from o2o.experiments.methods import METHODS
    from o2o.experiments.tuning import load_tuned_files

    scenario = load_scenario(args.scenario, args.overrides)
    tuned = load_tuned_files(args.tuned, scenario, args.network_seed)
    settings = learner_settings(args.settings, args.set_offline, args.set_online, args.reward_credit,
                                args.obs_layout, args.log_heuristic, args.log_tuned,
                                options=("--set-offline", "--set-online"))
    plan = _plan(args, scenario, settings.obs_layout)
    out = Path(args.out or f"runs/{'quick' if args.quick else 'main'}")
    check_output_folder(out, "--out")
    if args.marl:
        from o2o.core.seeds import TEST
        from o2o.experiments.marl.results import check_marl_folders

        check_marl_folders(args.marl, scenario.model_dump(mode="json"), args.network_seed,
                           TEST.take(plan.eval_episodes))
    log = (lambda _msg: None) if args.json else print
    report = run_pipeline(scenario, out, plan, network_seed=args.network_seed,
                          settings=settings, workers=args.workers, tuned=tuned, log=log)
    if args.marl:
        from o2o.experiments.marl.results import add_marl_rows

        report = add_marl_rows(out, report, args.marl, log=log)
    if args.json:
        print(json.dumps(json_safe({k: report[k] for k in [*METHODS, "bound", "bound-task", "marl"]
                                    if k in report})))
    else:
        print(f"results in {out}/ (results.json, results.md, learning_curve.png, deployment.png, comparison.png, "
              "models/, logs.db, metrics/)")
    return 0


def cmd_ablation(args) -> int:
    from o2o.experiments.ablation import RUNGS, run_ablation

    scenario = load_scenario(args.scenario, args.overrides)
    rungs = args.rung or None
    if rungs and any(r >= len(RUNGS) for r in rungs):
        raise UserError(f"--rung must lie in 0..{len(RUNGS) - 1}")
    if rungs and len(set(rungs)) != len(rungs):
        raise UserError(f"--rung repeats a rung ({' '.join(map(str, rungs))}); give each rung once")
    plan = _plan(args, scenario, OBS_LAYOUT_V2)  # the largest observation any rung uses
    out = Path(args.out or "runs/ablation")
    check_output_folder(out, "--out")
    report = run_ablation(scenario, out, plan, network_seed=args.network_seed,
                          workers=args.workers, rungs=rungs,
                          log=(lambda _msg: None) if args.json else print)
    if args.json:
        print(json.dumps(json_safe(report["rungs"])))
    return 0


def add_tuned_arg(p) -> None:
    p.add_argument("--tuned", action="append", default=[], metavar="FILE",
                   help="a file of 'o2o tune' for this scenario and network seed: that rule is compared "
                        "with its values (repeatable); the tunable rules without one are tuned here on "
                        "validation episodes")


def _plan_args(p, what: str) -> None:
    p.add_argument("--quick", action="store_true", help=f"a small {what} for a first look")
    p.add_argument("--seeds", type=TRAINING_SEEDS, help="training seeds (full: 3)")
    p.add_argument("--workers", type=WORKERS, help="parallel training processes (default: CPU count)")
    p.add_argument("--log-episodes", type=COUNT, help="heuristic episodes logged for offline training")
    p.add_argument("--offline-steps", type=COUNT, help="gradient steps of offline training")
    p.add_argument("--online-episodes", type=COUNT, help="episodes of online fine-tuning (and online-only)")
    p.add_argument("--eval-episodes", type=COUNT, help="held-out evaluation episodes")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _marl_arg(p) -> None:
    p.add_argument("--marl", action="append", default=[], metavar="DIR",
                   help="add an 'o2o marl' result (its --out folder) as a row of the comparison, "
                        "paired with O2O-DRL on the same episodes (repeatable)")


def _ks(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
    if not ks:
        raise argparse.ArgumentTypeError("expected at least one k")
    return ks


def cmd_probes_curve(args) -> int:
    from o2o.core.decpomdp import ProbeBudgetError
    from o2o.core.network import sample_network
    from o2o.experiments.probes_curve import check_ks, probes_curve

    scenario = load_scenario(args.scenario, args.overrides)
    try:
        check_ks(args.k, scenario.nodes)
    except ValueError as exc:
        raise UserError(f"--k: {exc}") from None
    settings = lambda layout: learner_settings(args.settings, args.set_offline, args.set_online,  # noqa: E731
                                               args.reward_credit, layout, args.log_heuristic,
                                               args.log_tuned, options=("--set-offline", "--set-online"))
    settings(f"o2o-obs-v3-k{max(args.k)}")  # refused before anything runs
    plan = _plan(args, scenario, f"o2o-obs-v3-k{max(args.k)}")
    out = Path(args.out or "runs/probes_curve")
    check_output_folder(out, "--out")
    log = (lambda _msg: None) if args.json else print
    try:
        result = probes_curve(scenario, sample_network(scenario, args.network_seed), out, args.k, plan,
                              settings, network_seed=args.network_seed, tune_episodes=args.tune_episodes,
                              workers=args.workers, log=log)
    except ProbeBudgetError as exc:
        raise UserError(str(exc)) from None
    (out / "probes_curve.json").write_text(json.dumps(json_safe(result), indent=2) + "\n")
    if args.json:
        print(json.dumps(json_safe(result)))
    else:
        print(f"{'k':>3} {'learner':>8} {'probes':>6} {'rule':>8} {'probes':>6}  learner-ratc [95% CI]      "
              f"learner-rule [95% CI]")
        for p in result["points"]:
            d, r = p["learner"], p["rule"]
            print(f"{p['k']:>3} {d['success_rate']['mean']:8.4f} {d['probes_per_task']:6.2f} "
                  f"{r['success_rate']['mean']:8.4f} {r['probes_per_task']:6.2f}  "
                  f"{d['vs_ratc']['diff']:+.4f} {interval_text(d['vs_ratc'])}  "
                  f"{d['vs_rule']['diff']:+.4f} {interval_text(d['vs_rule'])}")
        b = result["ratc"]
        print(f"ratc {b['success_rate']['mean']:.4f} ({b['probes_per_task']:.2f} probes per task); "
              f"results in {out}/ (probes_curve.json, probes_curve.png, k*/models, k*/logs.db)")
    return 0


def _log_tuned_arg(p) -> None:
    p.add_argument("--log-tuned", action=argparse.BooleanOptionalAction, default=None,
                   help="run a tunable logging heuristic at the values tuned for this network on "
                        "validation episodes (default: the settings')")


def interval_text(d: dict) -> str:
    lo, hi = d["lo"], d["hi"]
    return "[n/a]" if lo is None or lo != lo else f"[{lo:+.4f}, {hi:+.4f}]"


def register(sub, bench) -> None:
    c = sub.add_parser("probes-curve", help="success against the probe budget k: a learner on "
                       "o2o-obs-v3-k<k> and the tuned slack-reliable-k per k, paired with RATC and "
                       "each other on held-out episodes; writes a JSON and a PNG")
    add_scenario_args(c)
    c.add_argument("--k", type=_ks, required=True, metavar="K,K,...",
                   help="probe budgets, each in 1..N-1 (e.g. 1,2,4,8,19 at 20 nodes)")
    _plan_args(c, "curve (minutes)")
    c.add_argument("--tune-episodes", type=COUNT, default=10,
                   help="validation episodes the rule is tuned on at each k (default 10)")
    c.add_argument("--out", help="folder (default runs/probes_curve)")
    add_settings_arg(c)
    add_reward_credit_arg(c, "default: the settings'")
    c.add_argument("--log-heuristic", choices=sorted(HEURISTICS), default=None,
                   help="the heuristic whose task logs offline training learns from (default: the settings')")
    _log_tuned_arg(c)
    c.add_argument("--set-offline", action="append", default=[], metavar="KEY=VALUE",
                   help="override an offline hyper-parameter (repeatable)")
    c.add_argument("--set-online", action="append", default=[], metavar="KEY=VALUE",
                   help="override an online hyper-parameter (repeatable)")
    c.set_defaults(func=cmd_probes_curve)


    r = sub.add_parser("report", help="recompute a finished run's comparison from its saved "
                       "models, with O2O-DRL's paired differences to every method")
    r.add_argument("--run", required=True, help="the run folder of 'o2o run'")
    r.add_argument("--json", action="store_true", help="print O2O-DRL's paired differences as JSON")
    _marl_arg(r)
    r.set_defaults(func=cmd_report)

    a = sub.add_parser("ablation", help="what each change to O2O-DRL adds: offline-only and "
                       "O2O-DRL for each rung of settings, on the same held-out episodes")
    add_scenario_args(a)
    _plan_args(a, "ablation")
    a.add_argument("--out", help="folder (default runs/ablation)")
    a.add_argument("--rung", type=at_least(0), action="append",
                   help="only these rungs, by number (repeatable; default all)")
    a.set_defaults(func=cmd_ablation)

    p = sub.add_parser("run", help="the whole O2O-DRL pipeline: heuristic logs, offline training, "
                       "online fine-tuning, baselines, evaluation, report")
    add_scenario_args(p)
    _plan_args(p, "run (minutes)")
    p.add_argument("--out", help="run folder (default runs/main, or runs/quick with --quick)")
    add_settings_arg(p)
    add_reward_credit_arg(p, "of the exported data set and of online-only; default: the "
                             "settings' (project: node, paper: slot)")
    add_obs_layout_arg(p, "of the data set and of online-only; default the settings' "
                          "(project: v2, paper: v1)")
    p.add_argument("--log-heuristic", choices=sorted(HEURISTICS), default=None,
                   help="the heuristic whose task logs offline training learns from (default: "
                        "the settings'; project: spread, paper: ratc)")
    _log_tuned_arg(p)
    p.add_argument("--set-offline", action="append", default=[], metavar="KEY=VALUE",
                   help="override an offline hyper-parameter (repeatable)")
    p.add_argument("--set-online", action="append", default=[], metavar="KEY=VALUE",
                   help="override an online hyper-parameter (repeatable)")
    add_tuned_arg(p)
    _marl_arg(p)
    p.set_defaults(func=cmd_run)
