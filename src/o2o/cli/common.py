"""What the command groups share: scenario arguments and the comparison table of
``o2o simulate`` (also printed by ``o2o evaluate`` and the testbed)."""

from __future__ import annotations

import argparse
import json

import numpy as np

from o2o.core.limits import (
    MAX_COUNT,
    MAX_SEED,
    MAX_TESTBED_EPISODES,
    MAX_TRAINING_SEED,
    MAX_TRAINING_SEEDS,
    MAX_WORKERS,
)
from o2o.core.metrics import format_probes
from o2o.core.progress import progress_bar
from o2o.sim import mean_bounds
from o2o.sim.rollout import probes_per_task, simulate

COUNT_FIELDS = ("tasks", "success", "drop", "exec_fail", "trans_fail")


def at_least(minimum: int, maximum: int = MAX_COUNT):
    """An argparse type: a whole number in [``minimum``, ``maximum``] (a bad value is a
    one-line error). Every count has an upper bound (o2o.core.limits, docs/limits.md), checked
    here, before any list is built or anything written."""
    def parse(text: str) -> int:
        digits = text.strip().lstrip("+-")
        if len(digits) > 4000 or not digits.isdigit():  # int() refuses 4300+ digits
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}")
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,} (docs/limits.md), "
                                             f"got {value:,}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    parse.maximum = maximum  # type: ignore[attr-defined]
    return parse


COUNT = at_least(1)      # episodes, steps, batch sizes, repeats: 1 .. 10^6
SEED = at_least(0, MAX_SEED)                    # episode and network seeds
TRAINING_SEED = at_least(0, MAX_TRAINING_SEED)  # the seed of one training run
TRAINING_SEEDS = at_least(1, MAX_TRAINING_SEEDS)  # how many training seeds
WORKERS = at_least(1, MAX_WORKERS)              # processes, torch threads
TESTBED_EPISODES = at_least(1, MAX_TESTBED_EPISODES)


def add_scenario_args(p: argparse.ArgumentParser, default: str = "paper-sim") -> None:
    p.add_argument("--scenario", default=default,
                   help=f"preset name (paper-sim, paper-testbed) or YAML file (default {default})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, value read as YAML (repeatable)")
    p.add_argument("--network-seed", type=SEED, default=0, help="seed of the network draw (default 0)")


def summarize(metrics: dict[str, np.ndarray], extended: bool = False) -> dict[str, float | int | str]:
    """The JSON summary of ``o2o simulate``; ``extended`` adds the mean completion time of
    successful tasks and the mean CPU utilisation (shown in the table, not in the JSON)."""
    rate = metrics["success_rate"]
    out: dict[str, float | int | str] = {
        "success_rate": float(rate.mean()),
        "success_rate_std": float(rate.std(ddof=1)) if rate.size > 1 else 0.0,
        "probes_per_task": probes_per_task(metrics),
    }
    out.update({k: int(metrics[k].sum()) for k in COUNT_FIELDS})
    if extended:
        out["mean_completion_s"] = float(np.nanmean(metrics["mean_completion_s"]))
        out["cpu_utilisation"] = float(metrics["node_utilisation"].mean())
    return out


def format_bounds(bounds: dict) -> list[str]:
    """The lines of the two bounds (``bound``: the LP, contention-aware; ``bound-task``: per
    task), under a table of success rates."""
    lines = []
    for name in ("bound", "bound-task"):
        if name in bounds:
            note = (f"  (LP on the first {bounds['bound_episodes']} episodes)"
                    if name == "bound" and "bound_episodes" in bounds else "")
            lines.append(f"{name:<18}{bounds[name]:>18.4f}{note}")
    return lines


def format_table(results: dict[str, dict], bounds: dict) -> str:
    extended = all("mean_completion_s" in r for r in results.values())
    header = f"{'scheduler':<18}{'success rate':>18}{'probes/task':>13}{'tasks':>9}{'success':>9}{'drop':>8}{'exec_fail':>11}{'trans_fail':>12}"
    if extended:
        header += f"{'completion_s':>14}{'cpu_util':>10}"
    lines = [header, "-" * len(header)]
    for name, r in results.items():
        rate = f"{r['success_rate']:.4f} ± {r['success_rate_std']:.4f}"
        line = (f"{name:<18}{rate:>18}{format_probes(r.get('probes_per_task')):>13}{r['tasks']:>9}{r['success']:>9}{r['drop']:>8}"
                f"{r['exec_fail']:>11}{r['trans_fail']:>12}")
        if extended:
            line += f"{r['mean_completion_s']:>14.3f}{r['cpu_utilisation']:>10.3f}"
        lines.append(line)
    lines += format_bounds(bounds)
    lines.append("probes/task: probe requests to other nodes per task (a node reads its own state "
                 "without one); full: sees every queue")
    for name, r in results.items():
        if r.get("params"):
            where = (f"tuned on {len(r['tuned']['validation_seeds'])} validation episodes ({r['tuned']['source']})"
                     if r.get("tuned") else "defaults")
            values = ", ".join(f"{k}={v:g}" for k, v in r["params"].items())
            lines.append(f"{name}: {values} ({where})")
        elif r.get("tuned") and "rule_taken" in r["tuned"]:
            taken = ", ".join(f"{rule}: {n}" for rule, n in r["tuned"]["rule_taken"].items() if n)
            draws = r["tuned"]["clock_draws"]
            scored = f"{draws} redrawn failure clocks" if draws else "a failure-free copy, weighted by reliability"
            lines.append(f"{name}: per episode, the greedy rule with the most expected successes on "
                         f"{scored}; taken ({r['tuned']['episodes']} episodes): {taken}")
    return "\n".join(lines)


def simulate_report(scenario, network_seed: int, seeds: list[int], results: dict[str, dict],
                    bounds: dict) -> str:
    """The table ``o2o simulate`` prints, with its header line."""
    return (f"scenario {scenario.name}, network seed {network_seed}, episodes {seeds[0]}..{seeds[-1]}\n"
            + format_table(results, bounds))


def scheduler_results(scenario, network, schedulers: dict, seeds: list[int], *, extended: bool = True,
                      batch_size: int = 64, progress=None,
                      tuned: dict[str, dict] | None = None) -> tuple[dict[str, dict], dict]:
    """Every scheduler on the same episodes: its row of ``o2o simulate``'s table, and both bounds
    (``mean_bounds``). A rule with parameters also gets them (``params``) and, where they were
    tuned, what the tuning kept (``tuned``: its record's summary); ``central`` gets the rule its
    planner chose on validation episodes (``tuned``)."""
    results = {}
    for name, sched in schedulers.items():
        if progress is not None:
            progress.set_postfix_str(name)
        metrics = simulate(scenario, network, seeds, sched, batch_size=batch_size,
                           progress=None if progress is None else progress.update)
        results[name] = summarize(metrics, extended=extended)
        if hasattr(sched, "params"):
            results[name]["params"] = sched.params()
        if tuned and name in tuned:
            results[name]["tuned"] = tuned[name]
        if getattr(sched, "chosen", None):
            results[name]["tuned"] = sched.chosen
    return results, mean_bounds(scenario, network, seeds)


def compare_schedulers(scenario, network, schedulers: dict, seeds: list[int], *, network_seed: int,
                       as_json: bool, batch_size: int = 64, tuned: dict[str, dict] | None = None) -> int:
    """Run every scheduler on the same episodes and print the table (or the JSON object) of
    ``o2o simulate``; shared by ``o2o simulate`` and ``o2o evaluate``."""
    with progress_bar(total=len(schedulers) * len(seeds), desc="simulate", unit="episode",
                      disable=as_json) as bar:
        results, bounds = scheduler_results(scenario, network, schedulers, seeds,
                                            extended=not as_json, batch_size=batch_size, progress=bar,
                                            tuned=tuned)
    if as_json:
        print(json.dumps({**results, **bounds}))
    else:
        print(simulate_report(scenario, network_seed, seeds, results, bounds))
    return 0


def reward_credit_arg(value: str) -> str:
    """argparse type of --reward-credit (``o2o.core.decpomdp``: the names and counterfactual-w<w>)."""
    from o2o.core.decpomdp import CREDIT_NAMES, is_reward_credit

    if not is_reward_credit(value):
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {CREDIT_NAMES})")
    return value
