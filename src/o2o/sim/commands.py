"""``o2o simulate`` and ``o2o bench sim``."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from o2o.config import load_scenario
from o2o.errors import UserError
from o2o.network import sample_network
from o2o.progress import progress_bar
from o2o.schedulers import episode_bound, make_scheduler
from o2o.sim.episodes import sample_episodes
from o2o.sim.run import rollout, simulate

COUNT_FIELDS = ("tasks", "success", "drop", "exec_fail", "trans_fail")


def add_scenario_args(p: argparse.ArgumentParser, default: str = "paper-sim") -> None:
    p.add_argument("--scenario", default=default,
                   help=f"preset name (paper-sim, paper-testbed) or YAML file (default {default})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario field, value read as YAML (repeatable)")
    p.add_argument("--network-seed", type=int, default=0, help="seed of the network draw (default 0)")


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


def compare_schedulers(scenario, network, schedulers: dict, seeds: list[int], *, network_seed: int,
                       as_json: bool, batch_size: int = 64) -> int:
    """Run every scheduler on the same episodes and print the table (or the JSON object) of
    ``o2o simulate``; shared by ``o2o simulate`` and ``o2o evaluate``."""
    results = {}
    with progress_bar(total=len(schedulers) * len(seeds), desc="simulate", unit="episode",
                      disable=as_json) as bar:
        for name, sched in schedulers.items():
            bar.set_postfix_str(name)
            metrics = simulate(scenario, network, seeds, sched, batch_size=batch_size,
                               progress=bar.update)
            results[name] = summarize(metrics, extended=not as_json)
    bound = float(episode_bound(network, sample_episodes(scenario, network, seeds)).mean())
    if as_json:
        print(json.dumps({**results, "bound": bound}))
    else:
        print(f"scenario {scenario.name}, network seed {network_seed}, "
              f"episodes {seeds[0]}..{seeds[-1]}")
        print(format_table(results, bound))
    return 0


def cmd_simulate(args) -> int:
    if args.episodes < 1:
        raise UserError("--episodes must be at least 1")
    scenario = load_scenario(args.scenario, args.overrides)
    network = sample_network(scenario, args.network_seed)
    schedulers = {name: make_scheduler(name) for name in args.scheduler or ["ratc"]}
    seeds = [args.seed + k for k in range(args.episodes)]
    return compare_schedulers(scenario, network, schedulers, seeds, network_seed=args.network_seed,
                              as_json=args.json, batch_size=args.batch_size)


def measure_throughput(scenario, network, scheduler, batch: int, repeats: int) -> float:
    """Node-slots per second of the simulator with ``scheduler``, best of ``repeats``."""
    episodes = sample_episodes(scenario, network, range(batch))
    rollout(scenario, network, episodes.select(slice(0, 2)), scheduler)  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        rollout(scenario, network, episodes, scheduler)
        elapsed = time.perf_counter() - start
        best = max(best, batch * scenario.slots * scenario.nodes / elapsed)
    return best


def cmd_bench_sim(args) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    network = sample_network(scenario, args.network_seed)
    out = {}
    for name in args.scheduler or ["random", "ratc"]:
        rate = measure_throughput(scenario, network, make_scheduler(name), args.batch, args.repeats)
        out[name] = {"node_slots_per_s": rate}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"simulator throughput, {scenario.name}, {args.batch} episodes in one batch, one process")
        for name, r in out.items():
            print(f"{name:<10}{r['node_slots_per_s']:>14,.0f} node-slots/s")
    return 0


def register(sub, bench) -> None:
    p = sub.add_parser("simulate", help="run schedulers on the same simulated episodes and compare")
    add_scenario_args(p)
    p.add_argument("--scheduler", action="append", metavar="NAME",
                   help="random, local, ratc, rda, esf, central (repeatable; default ratc)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="first episode seed (default 0)")
    p.add_argument("--batch-size", type=int, default=64, help="episodes run at once as arrays")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_simulate)

    b = bench.add_parser("sim", help="simulator throughput in node-slots per second")
    add_scenario_args(b)
    b.add_argument("--scheduler", action="append", metavar="NAME", help="default: random and ratc")
    b.add_argument("--batch", type=int, default=1024, help="episodes per batch (default 1024)")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_sim)
