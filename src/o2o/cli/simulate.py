"""``o2o simulate`` and ``o2o bench sim``."""

from __future__ import annotations

import json
import time

from o2o.cli.common import COUNT, SEED, add_scenario_args, compare_schedulers
from o2o.core.episodes import sample_episodes
from o2o.core.errors import UserError
from o2o.core.limits import check_simulation
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.sim import CENTRAL, SCHEDULERS, make_scheduler
from o2o.sim.rollout import rollout


def cmd_simulate(args) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    check_simulation(scenario, min(args.batch_size, args.episodes))
    from o2o.experiments.tuning import load_tuned_files, summary

    tuned = load_tuned_files(args.tuned, scenario, args.network_seed)
    asked = args.scheduler or ([] if tuned or args.model else ["ratc"])
    if "drl" in asked and not args.model:
        raise UserError("--scheduler drl needs --model MODEL_DIR (a model folder or store)")
    if args.model and "drl" not in asked:
        asked = [*asked, "drl"]
    names = list(dict.fromkeys([*asked, *tuned]))
    network = sample_network(scenario, args.network_seed)
    schedulers = {}
    for name in names:
        if name == "drl":  # the model's nodes_range and trained ranges are checked here
            from o2o.schedulers.drl import DRLRule

            schedulers[name] = DRLRule.from_model(args.model, scenario, network)
        else:
            schedulers[name] = make_scheduler(name, tuned[name]["params"] if name in tuned else None)
            fits = getattr(schedulers[name], "check_nodes", None)
            if fits is not None:  # a probe budget beyond N - 1 is refused before anything runs
                fits(network.n)
    seeds = [args.seed + k for k in range(args.episodes)]
    return compare_schedulers(scenario, network, schedulers, seeds, network_seed=args.network_seed,
                              as_json=args.json, batch_size=args.batch_size,
                              tuned={k: summary(v) for k, v in tuned.items()})


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
    check_simulation(scenario, args.batch)
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


def cmd_bench_yardsticks(args) -> int:
    """CPU seconds per episode of the yardsticks: the contention-aware bound's LP and each
    planner, on the same episodes (one process, one core)."""
    from o2o.sim.bound import episode_lp_bound
    from o2o.sim.rollout import simulate

    scenario = load_scenario(args.scenario, args.overrides)
    check_simulation(scenario, args.episodes)
    network = sample_network(scenario, args.network_seed)
    seeds = list(range(args.seed, args.seed + args.episodes))
    out = {}
    began = time.process_time()
    episode_lp_bound(scenario, network, sample_episodes(scenario, network, seeds))
    out["bound"] = {"cpu_s_per_episode": (time.process_time() - began) / len(seeds)}
    for name in CENTRAL:
        began = time.process_time()
        simulate(scenario, network, seeds, make_scheduler(name))
        out[name] = {"cpu_s_per_episode": (time.process_time() - began) / len(seeds)}
    if args.json:
        print(json.dumps({"nodes": scenario.nodes, "slots": scenario.slots, "episodes": len(seeds), **out}))
    else:
        print(f"yardsticks, {scenario.name} with {scenario.nodes} nodes and {scenario.slots} slots, "
              f"network seed {args.network_seed}, {len(seeds)} episodes; CPU seconds of one process")
        for name, r in out.items():
            print(f"{name:<18}{r['cpu_s_per_episode']:>8.2f} s per episode")
    return 0


def register(sub, bench) -> None:
    p = sub.add_parser("simulate", help="run schedulers on the same simulated episodes and compare")
    add_scenario_args(p)
    p.add_argument("--scheduler", action="append", metavar="NAME",
                   help=f"{', '.join(SCHEDULERS)}, drl (with --model) (repeatable; default ratc); "
                        "the bounds (bound, bound-task) are printed under every table")
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="the learned model the drl scheduler runs (a model folder, store or fsspec "
                        "URL); refused where its manifest does not allow this N or scenario")
    p.add_argument("--tuned", action="append", default=[], metavar="FILE",
                   help="a file of 'o2o tune': its rule runs with the tuned parameters (repeatable; "
                        "refused if made for another scenario or network seed)")
    p.add_argument("--episodes", type=COUNT, default=10, help="episodes to run (default 10)")
    p.add_argument("--seed", type=SEED, default=0, help="first episode seed (default 0)")
    p.add_argument("--batch-size", type=COUNT, default=64,
                   help="episodes run at once as arrays (default 64; memory grows with it)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_simulate)

    b = bench.add_parser("sim", help="simulator throughput in node-slots per second")
    add_scenario_args(b)
    b.add_argument("--scheduler", action="append", metavar="NAME", help="default: random and ratc")
    b.add_argument("--batch", type=COUNT, default=1024, help="episodes per batch (default 1024)")
    b.add_argument("--repeats", type=COUNT, default=3, help="timed repeats, best kept (default 3)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=cmd_bench_sim)

    y = bench.add_parser("yardsticks", help="CPU time per episode of the bound's LP and the planners")
    add_scenario_args(y)
    y.add_argument("--episodes", type=COUNT, default=3, help="episodes timed (default 3)")
    y.add_argument("--seed", type=SEED, default=0, help="first episode seed (default 0)")
    y.add_argument("--json", action="store_true", help="print one JSON object")
    y.set_defaults(func=cmd_bench_yardsticks)
