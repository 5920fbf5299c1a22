"""``o2o marl train``: an external MARL algorithm (BenchMARL's MAPPO, IPPO, QMIX or MASAC)
trained on an o2o scenario with O2O-DRL's online budget and evaluated on ``o2o run``'s held-out
episodes (``o2o.experiments.marl``; needs the ``marl`` extra). ``o2o marl compare``: their rows
beside O2O-DRL's from a run's ``results.json`` (no extra needed)."""

from __future__ import annotations

import json
from pathlib import Path

from o2o.cli.common import COUNT, SEED, add_scenario_args
from o2o.core.errors import UserError
from o2o.core.metrics import json_safe
from o2o.core.outputs import check_output_folder
from o2o.core.scenario import load_scenario
from o2o.experiments.marl.results import ALGORITHMS, RESULTS

EXTRA_HINT = "install the marl extra: pip install -e '.[marl]' torch==<your torch version>"


def _learning_rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UserError(f"--lr-grid: expected learning rates separated by commas, got {text!r}") from None
    if not rates or any(not (0 < r < 1) for r in rates):
        raise UserError(f"--lr-grid: learning rates lie in (0, 1), got {text!r}")
    return rates


def cmd_marl(args) -> int:
    load_scenario(args.scenario, args.overrides)  # a bad scenario is refused before any work
    lr_grid = _learning_rates(args.lr_grid) if args.lr_grid else None
    out = Path(args.out)
    check_output_folder(out, "--out")
    if (out / RESULTS).exists():
        raise UserError(f"{out} already holds an 'o2o marl' result; choose another --out")
    try:
        from o2o.experiments.marl.train import LR_GRID, run_marl
    except ImportError as exc:
        raise UserError(f"o2o marl needs BenchMARL and TorchRL ({exc}); {EXTRA_HINT}") from None
    report = run_marl(args.algorithm, args.scenario, args.overrides, args.network_seed, out,
                      budget_x=args.budget_x, training_seed=args.training_seed,
                      lr_grid=lr_grid or LR_GRID, eval_episodes=args.eval_episodes,
                      validation_episodes=args.validation_episodes,
                      log=(lambda _msg: None) if args.json else print)
    if args.json:
        print(json.dumps(json_safe({k: report[k] for k in ("method", "success_rate", "per_episode",
                                                            "budget", "wall_s")})))
    else:
        print(f"results in {out}/{RESULTS}")
    return 0


def cmd_marl_compare(args) -> int:
    from o2o.experiments.marl.results import format_marl_rows, marl_rows

    path = Path(args.run_results)
    try:
        run = json.loads(path.read_text())
        timing = run.get("timing_s", {})
        o2o_s = timing.get("offline_per_seed", 0.0) + timing.get("online_per_seed", 0.0) or None
        o2o = run["o2o-drl"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path} is not the results file of a finished 'o2o run' ({exc})") from None
    rows = marl_rows(run, args.marl)
    if args.json:
        print(json.dumps(json_safe(rows)))
        return 0
    print(f"O2O-DRL: success rate {o2o['success_rate']:.4f} [{o2o['ci95'][0]:.4f}, {o2o['ci95'][1]:.4f}] "
          f"on {len(run['evaluation_seeds'])} held-out episodes ({path})")
    print(format_marl_rows(rows, o2o_s))
    return 0


def register(sub, bench) -> None:
    m = sub.add_parser("marl", help="external MARL baselines (BenchMARL): train one, compare them "
                       "with O2O-DRL")
    msub = m.add_subparsers(dest="marl", metavar="ACTION")
    msub.required = True
    c = msub.add_parser("compare", help="the 'o2o marl train' results beside O2O-DRL's, paired per "
                        "episode, from a finished run's results.json")
    c.add_argument("--run-results", required=True, metavar="RESULTS_JSON",
                   help="results.json of 'o2o run' (e.g. docs/results/main-net0.json)")
    c.add_argument("--marl", action="append", required=True, metavar="DIR",
                   help="an 'o2o marl train' --out folder (repeatable)")
    c.add_argument("--json", action="store_true", help="print the rows as JSON")
    c.set_defaults(func=cmd_marl_compare)

    p = msub.add_parser("train", help="train BenchMARL's MAPPO, IPPO, QMIX or MASAC on a scenario with "
                        "O2O-DRL's online budget; evaluate it on the held-out episodes of 'o2o run' "
                        "(needs the marl extra)")
    p.add_argument("--algorithm", required=True, choices=ALGORITHMS, help="BenchMARL's algorithm")
    add_scenario_args(p)
    p.add_argument("--budget-x", type=COUNT, default=1,
                   help="online budget as a multiple of O2O-DRL's (400 episodes x slots environment "
                        "steps; default 1)")
    p.add_argument("--training-seed", type=SEED, default=0,
                   help="BenchMARL's seed; training episodes from the same range as O2O-DRL's "
                        "training seed (default 0)")
    p.add_argument("--lr-grid", default=None, metavar="LR,LR",
                   help="learning rates tried, the best on validation episodes kept (default "
                        "5e-05,0.0005: BenchMARL's default and ten times it)")
    p.add_argument("--eval-episodes", type=COUNT, default=20,
                   help="held-out TEST episodes (those of 'o2o run --eval-episodes'; default 20)")
    p.add_argument("--validation-episodes", type=COUNT, default=20,
                   help="VALIDATION episodes that choose the learning rate (default 20)")
    p.add_argument("--out", required=True, help="folder for results.json and BenchMARL's files")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_marl)
