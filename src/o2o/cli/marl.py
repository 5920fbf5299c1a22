"""``o2o marl``: an external MARL algorithm (BenchMARL's MAPPO, IPPO, QMIX or MASAC) trained on
an o2o scenario with O2O-DRL's online budget and evaluated on ``o2o run``'s held-out episodes
(``o2o.experiments.marl``; needs the ``marl`` extra)."""

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


def register(sub, bench) -> None:
    p = sub.add_parser("marl", help="train BenchMARL's MAPPO, IPPO, QMIX or MASAC on a scenario with "
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
