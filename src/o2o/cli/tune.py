"""``o2o tune``: a rule's parameters per network and scenario, chosen on validation episodes
(``o2o.experiments.tuning``)."""

from __future__ import annotations

import json
from pathlib import Path

from o2o.cli.common import COUNT, SEED, add_scenario_args
from o2o.core.errors import UserError
from o2o.core.limits import check_simulation
from o2o.core.metrics import json_safe
from o2o.core.network import sample_network
from o2o.core.outputs import check_output_file, write_error
from o2o.core.scenario import load_scenario
from o2o.schedulers import TUNABLE


def cmd_tune(args) -> int:
    from o2o.experiments.tuning import tune_rule, validation_seeds

    scenario = load_scenario(args.scenario, args.overrides)
    validation_seeds(args.episodes, args.seed)   # refused before anything runs
    check_output_file(args.out, "--out")
    check_simulation(scenario, args.episodes)
    network = sample_network(scenario, args.network_seed)
    fixed = None
    if args.probes is not None:
        if "probes" not in TUNABLE[args.scheduler].PARAMS:
            raise UserError(f"--probes is the probe budget of slack-reliable-k, not of {args.scheduler}")
        fixed = {"probes": args.probes}
    record = tune_rule(scenario, network, args.scheduler, network_seed=args.network_seed,
                       episodes=args.episodes, first_seed=args.seed, fixed=fixed)
    text = json.dumps(json_safe(record), indent=2)
    try:
        out = Path(args.out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)   # as 'dataset export': tuned/x.json needs no mkdir first
        out.write_text(text + "\n")
    except OSError as exc:
        raise write_error(exc, args.out, "--out") from None
    params = ", ".join(f"{k}={v:g}" for k, v in record["params"].items())
    defaults = ", ".join(f"{k}={v:g}" for k, v in record["default_params"].items())
    print(f"{args.scheduler} on {scenario.name}, network seed {args.network_seed}: {params} "
          f"(validation success rate {record['validation_score']:.4f}; defaults {defaults}: "
          f"{record['default_score']:.4f}); {len(record['candidates'])} candidates on "
          f"{len(record['validation_seeds'])} validation episodes in {record['seconds']:.1f} s -> {args.out}")
    return 0


def register(sub, bench) -> None:
    p = sub.add_parser("tune", help="tune a rule's parameters for one network and scenario on "
                       "validation episodes; writes a file that simulate, run and figure accept")
    add_scenario_args(p)
    p.add_argument("--scheduler", required=True, choices=sorted(TUNABLE), help="the rule to tune")
    p.add_argument("--episodes", type=COUNT, default=10,
                   help="validation episodes every candidate runs on (default 10)")
    p.add_argument("--seed", type=SEED, default=None,
                   help="first episode seed; must be a validation seed (default 900000, the first)")
    p.add_argument("--probes", type=COUNT, default=None,
                   help="slack-reliable-k only: the nodes each decision probes, k in 1..N-1, fixed "
                        "while the other parameters are tuned (default 2, RATC's)")
    p.add_argument("--out", required=True, help="the tuned file to write (JSON)")
    p.set_defaults(func=cmd_tune)
