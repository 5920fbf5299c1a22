"""Choose among generalist models on validation episodes only: each model's mean success rate
on VALIDATION episodes of networks it never saw (network seeds 500 and 501, never used by the
tables or by training) at N = 10, 20 and 50, paper-sim otherwise.

    PYTHONPATH=src python scripts/generalist_validation.py MODEL_DIR [MODEL_DIR ...] [--rule]
        [--large-tasks | --sweep] [--nodes N [N ...]] [--task-size-max KB [KB ...]] [--case KEY=VALUE ...]
        [--temperature T [T ...]]

``--large-tasks`` scores instead the cases where the shipped model was weakest at the figures'
points: N = 20 with task_size_kb [1000, 10000] and [1000, 12000] on the same two networks
(the figure 5a points it was compared on use network 0, never these). ``--sweep`` scores
instead N = 20 at each level of the task size, arrival and failure-rate upper ends that the
generalist's rounds draw (one field at a time, paper-sim's other ranges), on the same two
networks: the distribution's points, never the held-out networks' table. ``--rule`` also prints
the same-information rule ``slack-reliable`` tuned on each of those networks and N (grid search
on 10 other validation episodes, 900 200 - 900 209, as ``o2o tune --seed 900200``) and run on
the same episodes: what a rule gets that is tuned where it runs. ``--nodes`` and
``--task-size-max`` keep only the cases of those N, or of those upper ends of ``task_size_kb``,
and ``--case KEY=VALUE`` those that set that override: e.g. a model trained on one network at
50 nodes, scored at ``--nodes 50`` on these networks it never saw. ``--temperature T ...``
scores each model's policy at each temperature T instead (every logit divided by T before the
masked softmax the nodes sample from: T < 1 sharper, T > 1 softer; 1 is the model as it is). A
model that cannot run a case (another N), an unknown model, a temperature that is not a positive
finite number, or filters that leave no case exit 2 with a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.core.seeds import VALIDATION
from o2o.learn.distribution import LEVELS, UPPER_ENDS
from o2o.learn.evaluate import at_temperature
from o2o.experiments.tuning import tune_rule
from o2o.schedulers.drl import DRLRule
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

NETWORKS = (500, 501)
NODES = (10, 20, 50)
EPISODES = 10
# (N, overrides of paper-sim) of each case: the default cases, and those of --large-tasks.
DEFAULT_CASES = [(n, []) for n in NODES]
LARGE_TASK_CASES = [(20, ["task_size_kb=[1000, 10000]"]), (20, ["task_size_kb=[1000, 12000]"])]


def sweep_cases() -> list:
    """--sweep: N = 20 at every level the generalist's rounds draw (``o2o.learn.distribution``)
    for the fields figures 5a-c sweep, one field at a time with paper-sim's lower end, except
    paper-sim's own upper end and the large-task cases."""
    base = load_scenario("paper-sim", [])
    large = {(20, tuple(o)) for _, o in LARGE_TASK_CASES}
    cases = []
    for field, (lo, hi) in UPPER_ENDS.items():
        low, own = getattr(base, field)
        for end in np.linspace(lo, hi, LEVELS):
            case = (20, [f"{field}=[{low:g}, {end:g}]"])
            if not np.isclose(end, own) and (case[0], tuple(case[1])) not in large:
                cases.append(case)
    return cases


def tuned_rule(scenario, network, network_seed: int):
    params = tune_rule(scenario, network, "slack-reliable", network_seed=network_seed, episodes=EPISODES,
                       first_seed=VALIDATION.take(1, 200)[0])["params"]
    return make_scheduler("slack-reliable", params)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", metavar="MODEL_DIR")
    p.add_argument("--rule", action="store_true", help="also the rule tuned on each case")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--large-tasks", action="store_true", help="the large-task cases instead")
    which.add_argument("--sweep", action="store_true",
                       help="instead, N = 20 at each level of task size, arrival and failure rate the rounds draw")
    p.add_argument("--nodes", type=int, nargs="+", metavar="N", help="only the cases of these N")
    p.add_argument("--task-size-max", type=float, nargs="+", metavar="KB",
                   help="only the cases whose task_size_kb ends at these upper ends (--large-tasks)")
    p.add_argument("--case", nargs="+", metavar="KEY=VALUE",
                   help="only the cases that set one of these overrides, written as the cases write them "
                        "(e.g. --sweep --case 'arrival_prob=[0, 0.6]')")
    p.add_argument("--temperature", type=float, nargs="+", metavar="T", default=[1.0],
                   help="score each model's policy at these temperatures (logits / T; default 1)")
    args = p.parse_args(argv)
    if not all(np.isfinite(t) and t > 0 for t in args.temperature):
        p.error(f"--temperature takes positive finite numbers, not {args.temperature}")
    if not args.models and not args.rule:
        p.error("give a MODEL_DIR, or --rule")
    cases = LARGE_TASK_CASES if args.large_tasks else sweep_cases() if args.sweep else DEFAULT_CASES
    if args.nodes:
        cases = [c for c in cases if c[0] in args.nodes]
    if args.task_size_max:
        cases = [c for c in cases if task_size_max(c) in args.task_size_max]
    if args.case:
        written = [o for c in cases for o in c[1]]
        cases = [c for c in cases if set(c[1]) & set(args.case)]
        if not cases:
            p.error(f"no case is left: --case takes an override as the cases write it, one of {written}")
    if not cases:
        p.error(f"no case is left: the cases are N {sorted({n for n, _ in DEFAULT_CASES})}, with "
                f"--large-tasks N {sorted({n for n, _ in LARGE_TASK_CASES})} with task_size_kb up to "
                f"{sorted(task_size_max(c) for c in LARGE_TASK_CASES)}, with --sweep N 20 with task_size_kb "
                f"up to {sorted(t for t in map(task_size_max, sweep_cases()) if t is not None)} and the others")
    args.cases = cases
    return args


def task_size_max(case) -> float | None:
    """The upper end of task_size_kb a case sets (None: paper-sim's)."""
    for override in case[1]:
        key, value = override.split("=", 1)
        if key == "task_size_kb":
            return float(json.loads(value)[1])
    return None


def validation_rates(cases, scheduler_at) -> list[float]:
    """The mean success rate, per case and network, of ``scheduler_at(scenario, network, seed)``
    on the EPISODES validation episodes."""
    rates = []
    for nodes, overrides in cases:
        scenario = load_scenario("paper-sim", [f"nodes={nodes}", *overrides])
        for s in NETWORKS:
            network = sample_network(scenario, s)
            scheduler = scheduler_at(scenario, network, s)
            rates.append(simulate(scenario, network, VALIDATION.take(EPISODES), scheduler)["success_rate"].mean())
    return rates


def model_at(model: str, temperature: float = 1.0):
    def at(scenario, network, network_seed):
        try:
            rule = DRLRule.from_model(model, scenario, network)
        except UserError as err:   # unknown model, another N, a scenario outside its ranges
            raise UserError(f"{model} at N = {network.n}: {err}") from err
        rule.actor = at_temperature(rule.actor, temperature)
        return rule
    return at


def main(argv: list[str]) -> int:
    args = parse(argv)
    where = f"cases {[(n, *o) for n, o in args.cases]} x networks {NETWORKS}"
    scored = [("slack-reliable tuned on each", tuned_rule)] if args.rule else []
    scored += [(model if t == 1.0 else f"{model} at temperature {t:g}", model_at(model, t))
               for model in args.models for t in args.temperature]
    for name, scheduler_at in scored:
        try:
            rates = validation_rates(args.cases, scheduler_at)
        except UserError as err:
            print(f"generalist_validation.py: {err}", file=sys.stderr)
            return 2
        print(f"{name}: validation {np.mean(rates):.4f} ({', '.join(f'{r:.4f}' for r in rates)}; "
              f"{where})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
