"""What the command groups share: scenario arguments and the comparison table of
``o2o simulate`` (also printed by ``o2o evaluate`` and the testbed)."""

from __future__ import annotations

import argparse
import json

import numpy as np

from o2o.core.episodes import sample_episodes
from o2o.core.limits import (
    MAX_COUNT,
    MAX_SEED,
    MAX_TESTBED_EPISODES,
    MAX_TRAINING_SEED,
    MAX_TRAINING_SEEDS,
    MAX_WORKERS,
)
from o2o.core.progress import progress_bar
from o2o.sim import episode_bound
from o2o.sim.rollout import simulate

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


def summarize(metrics: dict[str, np.ndarray], extended: bool = False) -> dict[str, float | int]:
    """The JSON summary of ``o2o simulate``; ``extended`` adds the mean completion time of
    successful tasks and the mean CPU utilisation (shown in the table, not in the JSON)."""
    rate = metrics["success_rate"]
    out: dict[str, float | int] = {
        "success_rate": float(rate.mean()),
        "success_rate_std": float(rate.std(ddof=1)) if rate.size > 1 else 0.0,
    }
    out.update({k: int(metrics[k].sum()) for k in COUNT_FIELDS})
    if extended:
        out["mean_completion_s"] = float(np.nanmean(metrics["mean_completion_s"]))
        out["cpu_utilisation"] = float(metrics["node_utilisation"].mean())
    return out


def format_table(results: dict[str, dict], bound: float) -> str:
    extended = all("mean_completion_s" in r for r in results.values())
    header = f"{'scheduler':<14}{'success rate':>18}{'tasks':>9}{'success':>9}{'drop':>8}{'exec_fail':>11}{'trans_fail':>12}"
    if extended:
        header += f"{'completion_s':>14}{'cpu_util':>10}"
    lines = [header, "-" * len(header)]
    for name, r in results.items():
        rate = f"{r['success_rate']:.4f} ± {r['success_rate_std']:.4f}"
        line = (f"{name:<14}{rate:>18}{r['tasks']:>9}{r['success']:>9}{r['drop']:>8}"
                f"{r['exec_fail']:>11}{r['trans_fail']:>12}")
        if extended:
            line += f"{r['mean_completion_s']:>14.3f}{r['cpu_utilisation']:>10.3f}"
        lines.append(line)
    lines.append(f"{'bound':<14}{bound:>18.4f}")
    return "\n".join(lines)


def simulate_report(scenario, network_seed: int, seeds: list[int], results: dict[str, dict],
                    bound: float) -> str:
    """The table ``o2o simulate`` prints, with its header line."""
    return (f"scenario {scenario.name}, network seed {network_seed}, episodes {seeds[0]}..{seeds[-1]}\n"
            + format_table(results, bound))


def scheduler_results(scenario, network, schedulers: dict, seeds: list[int], *, extended: bool = True,
                      batch_size: int = 64, progress=None) -> tuple[dict[str, dict], float]:
    """Every scheduler on the same episodes: its row of ``o2o simulate``'s table, and the bound."""
    results = {}
    for name, sched in schedulers.items():
        if progress is not None:
            progress.set_postfix_str(name)
        metrics = simulate(scenario, network, seeds, sched, batch_size=batch_size,
                           progress=None if progress is None else progress.update)
        results[name] = summarize(metrics, extended=extended)
    bound = float(episode_bound(network, sample_episodes(scenario, network, seeds)).mean())
    return results, bound


def compare_schedulers(scenario, network, schedulers: dict, seeds: list[int], *, network_seed: int,
                       as_json: bool, batch_size: int = 64) -> int:
    """Run every scheduler on the same episodes and print the table (or the JSON object) of
    ``o2o simulate``; shared by ``o2o simulate`` and ``o2o evaluate``."""
    with progress_bar(total=len(schedulers) * len(seeds), desc="simulate", unit="episode",
                      disable=as_json) as bar:
        results, bound = scheduler_results(scenario, network, schedulers, seeds,
                                           extended=not as_json, batch_size=batch_size, progress=bar)
    if as_json:
        print(json.dumps({**results, "bound": bound}))
    else:
        print(simulate_report(scenario, network_seed, seeds, results, bound))
    return 0
