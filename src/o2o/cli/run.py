"""``o2o run``: the main job (see ``o2o.experiments.main_job``)."""

from __future__ import annotations

import json
from pathlib import Path

from o2o.cli.common import add_scenario_args
from o2o.cli.learn import add_obs_layout_arg, add_reward_credit_arg
from o2o.core.errors import UserError
from o2o.core.scenario import load_scenario
from o2o.learn.settings import learner_settings
from o2o.schedulers import HEURISTICS


def cmd_report(args) -> int:
    from o2o.experiments.main_job import rebuild_report

    report = rebuild_report(Path(args.run), log=(lambda _msg: None) if args.json else print)
    paired = report["o2o-drl"]["paired"]
    if args.json:
        print(json.dumps(paired))
    else:
        print("O2O-DRL minus each method, paired per episode (95% CI):")
        for method, d in paired.items():
            print(f"  {method:13s} {d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]")
    return 0


def _plan(args):
    """The plan (full or quick) with the sizes given on the command line."""
    from o2o.experiments.main_job import PLANS

    changes = {k: getattr(args, k) for k in ("seeds", "log_episodes", "offline_steps",
                                                "online_episodes", "eval_episodes")
               if getattr(args, k) is not None}
    for key, value in changes.items():
        if value < 1:
            raise UserError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    return PLANS["quick" if args.quick else "full"].scaled(**changes)


def cmd_run(args) -> int:
    from o2o.experiments.main_job import run_pipeline

    scenario = load_scenario(args.scenario, args.overrides)
    plan = _plan(args)
    settings = learner_settings(args.settings, args.set_offline, args.set_online, args.reward_credit,
                                args.obs_layout, args.log_heuristic)
    out = Path(args.out or f"runs/{'quick' if args.quick else 'main'}")
    report = run_pipeline(scenario, out, plan, network_seed=args.network_seed,
                          settings=settings, workers=args.workers,
                          log=(lambda _msg: None) if args.json else print)
    if args.json:
        from o2o.experiments.methods import METHODS

        keys = [*METHODS, "bound"]
        print(json.dumps({k: report[k] for k in keys}))
    else:
        print(f"results in {out}/ (results.json, results.md, learning_curve.png, comparison.png, "
              "models/, logs.db, metrics/)")
    return 0


def cmd_ablation(args) -> int:
    from o2o.experiments.ablation import RUNGS, run_ablation

    scenario = load_scenario(args.scenario, args.overrides)
    rungs = args.rung or None
    if rungs and any(not 0 <= r < len(RUNGS) for r in rungs):
        raise UserError(f"--rung must lie in 0..{len(RUNGS) - 1}")
    out = Path(args.out or "runs/ablation")
    report = run_ablation(scenario, out, _plan(args), network_seed=args.network_seed,
                          workers=args.workers, rungs=rungs,
                          log=(lambda _msg: None) if args.json else print)
    if args.json:
        print(json.dumps(report["rungs"]))
    return 0


def _plan_args(p, what: str) -> None:
    p.add_argument("--quick", action="store_true", help=f"a small {what} for a first look")
    p.add_argument("--seeds", type=int, help="training seeds (full: 3)")
    p.add_argument("--workers", type=int, help="parallel training processes (default: CPU count)")
    p.add_argument("--log-episodes", type=int, help="heuristic episodes logged for offline training")
    p.add_argument("--offline-steps", type=int, help="gradient steps of offline training")
    p.add_argument("--online-episodes", type=int, help="episodes of online fine-tuning (and online-only)")
    p.add_argument("--eval-episodes", type=int, help="held-out evaluation episodes")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def register(sub, bench) -> None:
    r = sub.add_parser("report", help="recompute a finished run's comparison from its saved "
                       "models, with O2O-DRL's paired differences to every method")
    r.add_argument("--run", required=True, help="the run folder of 'o2o run'")
    r.add_argument("--json", action="store_true", help="print O2O-DRL's paired differences as JSON")
    r.set_defaults(func=cmd_report)

    a = sub.add_parser("ablation", help="what each change to O2O-DRL adds: offline-only and "
                       "O2O-DRL for each rung of settings, on the same held-out episodes")
    add_scenario_args(a)
    _plan_args(a, "ablation")
    a.add_argument("--out", help="folder (default runs/ablation)")
    a.add_argument("--rung", type=int, action="append", help="only these rungs (repeatable)")
    a.set_defaults(func=cmd_ablation)

    p = sub.add_parser("run", help="the whole O2O-DRL pipeline: heuristic logs, offline training, "
                       "online fine-tuning, baselines, evaluation, report")
    add_scenario_args(p)
    _plan_args(p, "run (minutes)")
    p.add_argument("--out", help="run folder (default runs/main, or runs/quick with --quick)")
    p.add_argument("--settings", choices=["project", "paper"], default="project",
                   help="hyper-parameters to start from: the project's (default; docs/learner.md "
                        "says what differs and why) or the paper's exact values")
    add_reward_credit_arg(p, "of the exported data set and of online-only; default: the "
                             "settings' (project: node, paper: slot)")
    add_obs_layout_arg(p, "of the data set and of online-only; default the settings' "
                          "(project: v2, paper: v1)")
    p.add_argument("--log-heuristic", choices=sorted(HEURISTICS), default=None,
                   help="the heuristic whose task logs offline training learns from (default: "
                        "the settings'; project: spread, paper: ratc)")
    p.add_argument("--set-offline", action="append", default=[], metavar="KEY=VALUE",
                   help="override an offline hyper-parameter (repeatable)")
    p.add_argument("--set-online", action="append", default=[], metavar="KEY=VALUE",
                   help="override an online hyper-parameter (repeatable)")
    p.set_defaults(func=cmd_run)
