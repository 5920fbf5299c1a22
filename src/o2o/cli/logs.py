"""``o2o collect``, ``o2o logs summary``, ``o2o dataset export`` and ``o2o bench logs`` (the
data-set suite's commands are in ``o2o.cli.datasets``)."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from o2o.cli.common import COUNT, SEED, add_scenario_args, reward_credit_arg
from o2o.cli.datasets import register as register_suite
from o2o.core.decpomdp import (
    OBS_LAYOUT_V2,
    OBS_LAYOUT_VERSION,
    obs_layout_option,
    REWARD_CREDITS,
)
from o2o.core.episodes import sample_episodes
from o2o.core.errors import UserError
from o2o.core.limits import check_simulation
from o2o.core.network import sample_network
from o2o.core.outputs import check_output_file, write_error
from o2o.core.progress import progress_bar
from o2o.core.scenario import load_scenario
from o2o.logs.collect import collect
from o2o.logs.dataset import build_dataset, save_dataset
from o2o.logs.db import describe_db
from o2o.logs.records import episode_logs_from_rollout
from o2o.logs.store import LogStore, damaged_log_guard
from o2o.sim import SCHEDULERS, make_scheduler

DB_HELP = "task log: a SQLite file path (or sqlite:///PATH) or a postgresql+psycopg:// URL"


# ---------------------------------------------------------------------------------- collect
def cmd_collect(args) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    check_simulation(scenario, min(args.batch_size, args.episodes))
    network = sample_network(scenario, args.network_seed)
    if args.scheduler == "drl":   # make_scheduler's "(or 'drl' with a model)": collect has no --model
        raise UserError(f"o2o collect logs the simulator's rules ({', '.join(SCHEDULERS)}), not drl; "
                        "to log a model's tasks run it on the testbed: "
                        "o2o testbed run --scheduler drl --model MODEL --db DB")
    scheduler = make_scheduler(args.scheduler)
    seeds = [args.seed + k for k in range(args.episodes)]
    with LogStore.open(args.db, create=True) as store, \
            progress_bar(total=len(seeds), desc=f"collect {args.scheduler}", unit="episode",
                         disable=args.json) as bar:
        result = collect(store, scenario, network, scheduler, args.scheduler, seeds,
                         network_seed=args.network_seed, batch_size=args.batch_size,
                         phase=args.phase, policy_version=args.policy_version,
                         progress=bar.update)
    out = {"run": result.run_id, "db": describe_db(args.db), "scheduler": args.scheduler,
           "episodes": result.episodes, "task_rows": result.task_rows,
           "success_rate": result.success_rate, "seconds": result.seconds}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"run {result.run_id}: {result.episodes} episodes of {scenario.name} with "
              f"{args.scheduler} (seeds {seeds[0]}..{seeds[-1]}, network seed "
              f"{args.network_seed}), {result.task_rows} task rows in {result.seconds:.1f} s")
        print(f"success rate {result.success_rate:.4f}, logged to {describe_db(args.db)}")
    return 0


# ---------------------------------------------------------------------------------- summary
def format_summary(runs: list[dict]) -> str:
    if not runs:
        return "no runs in this task log"
    header = (f"{'run':>4}  {'source':<7} {'scheduler':<10} {'phase':<10} {'scenario':<14}"
              f"{'N':>4}{'T':>5}  {'status':<12}{'episodes':>9}{'tasks':>9}{'success rate':>20}")
    lines = [header, "-" * len(header)]
    for r in runs:
        rate = ("-" if r["success_rate"] is None
                else f"{r['success_rate']:.4f} ± {r['success_rate_std']:.4f}")
        lines.append(f"{r['run']:>4}  {r['source']:<7} {r['scheduler']:<10} {r['phase']:<10} "
                     f"{r['scenario'][:13]:<14}{r['nodes']:>4}{r['slots']:>5}  {r['status']:<12}"
                     f"{r['episodes']:>9}{r['tasks']:>9}{rate:>20}")
    return "\n".join(lines)


def cmd_logs_summary(args) -> int:
    with LogStore.open(args.db, read_only=True) as store, damaged_log_guard(describe_db(args.db)):
        runs = store.summary()
    if args.json:
        print(json.dumps({"db": describe_db(args.db), "runs": runs}))
    else:
        print(f"task log {describe_db(args.db)}: {len(runs)} runs, "
              f"{sum(r['episodes'] for r in runs)} episodes")
        print(format_summary(runs))
    return 0


# ---------------------------------------------------------------------------------- export
def cmd_dataset_export(args) -> int:
    target = args.out if str(args.out).endswith(".npz") else f"{args.out}.npz"  # as save_dataset
    check_output_file(target, "--out")
    with LogStore.open(args.db, read_only=True) as store, damaged_log_guard(describe_db(args.db)):
        run_ids = args.run or None
        total = sum(len(store.episode_ids(r.id)) for r in store.runs()
                    if run_ids is None or r.id in run_ids)
        with progress_bar(total=total, desc="export", unit="episode", disable=args.json) as bar:
            data = build_dataset(store, run_ids, args.reward_credit, progress=bar.update,
                                 obs_layout=args.obs_layout)
    try:
        path = save_dataset(data, args.out, compress=args.compress)
    except OSError as exc:
        raise write_error(exc, args.out, "--out") from None
    out = {"out": str(path), "rows": int(data["actions"].shape[0]),
           "episodes": int(len(set(data["episode_ids"].tolist()))),
           "runs": sorted(set(data["run_ids"].tolist())),
           "obs_dim": int(data["observations"].shape[1]), "obs_layout": args.obs_layout,
           "reward_credit": args.reward_credit,
           "bytes": path.stat().st_size}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"wrote {out['rows']} transitions ({out['episodes']} episodes, runs "
              f"{', '.join(map(str, out['runs']))}, observation size {out['obs_dim']}, "
              f"{args.reward_credit} reward credit) to {path} ({out['bytes'] / 1e6:.1f} MB)")
    return 0


# ---------------------------------------------------------------------------------- bench
def measure_insert(db: str, scenario, network, logs, repeats: int) -> dict:
    """Task rows per second written by ``RunWriter.write_episodes`` (one transaction for the
    whole batch), best and median of ``repeats``; every repeat writes a fresh run that is
    deleted again afterwards, so a shared database is left as it was."""
    rates = []
    with LogStore.open(db, create=True) as store:
        for _ in range(repeats):
            writer = store.start_run(scenario, network, "bench", phase="benchmark")
            try:
                start = time.perf_counter()
                rows = writer.write_episodes(logs)
                rates.append(rows / (time.perf_counter() - start))
                writer.finish("completed")
                read_start = time.perf_counter()
                read_rows = sum(log.slots * log.nodes for _, log in store.read_episodes(writer.run_id))
                read_rate = read_rows / (time.perf_counter() - read_start)
            finally:
                store.delete_run(writer.run_id)
    return {"rows_per_s": max(rates), "rows_per_s_median": statistics.median(rates),
            "read_rows_per_s": read_rate, "rows_per_repeat": rows, "repeats": repeats}


def cmd_bench_logs(args) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    check_simulation(scenario, args.episodes)
    network = sample_network(scenario, args.network_seed)
    logs = episode_logs_from_rollout(scenario, network,
                                     sample_episodes(scenario, network, range(args.episodes)),
                                     make_scheduler("ratc"))
    out = {}
    with tempfile.TemporaryDirectory(prefix="o2o-bench-") as tmp:
        out["sqlite"] = measure_insert(str(Path(tmp) / "bench.db"), scenario, network, logs,
                                       args.repeats)
    if args.db:
        out[describe_db(args.db)] = measure_insert(args.db, scenario, network, logs, args.repeats)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"task-log insert throughput, {scenario.name} (N = {scenario.nodes}, "
              f"T = {scenario.slots}), {args.episodes} RATC episodes per transaction, "
              f"best of {args.repeats}")
        for where, r in out.items():
            label = "SQLite file" if where == "sqlite" else where
            print(f"  {label}: {r['rows_per_s']:,.0f} task rows/s insert "
                  f"(median {r['rows_per_s_median']:,.0f}), {r['read_rows_per_s']:,.0f} rows/s read")
    return 0


# ---------------------------------------------------------------------------------- parsers
def register(sub, bench) -> None:
    p = sub.add_parser("collect", help="simulate a scheduler and log every task to a database")
    add_scenario_args(p)
    p.add_argument("--scheduler", default="ratc", metavar="NAME",
                   help=f"scheduler whose decisions are logged: {', '.join(SCHEDULERS)} "
                        "(default ratc)")
    p.add_argument("--episodes", type=COUNT, default=200, help="episodes to run (default 200)")
    p.add_argument("--seed", type=SEED, default=0, help="first episode seed (default 0)")
    p.add_argument("--db", required=True, help=DB_HELP + "; created if missing")
    p.add_argument("--batch-size", type=COUNT, default=16,
                   help="episodes simulated at once and written in one transaction (default 16)")
    p.add_argument("--phase", default="heuristic",
                   help="phase recorded with the run (default heuristic)")
    p.add_argument("--policy-version", default=None, help="policy version recorded with the run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_collect)

    logs = sub.add_parser("logs", help="inspect task logs")
    logs_sub = logs.add_subparsers(dest="logs_command", metavar="WHAT")
    logs_sub.required = True
    s = logs_sub.add_parser("summary", help="runs, episodes and success rates read from a task log")
    s.add_argument("--db", required=True, help=DB_HELP)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_logs_summary)

    ds = sub.add_parser("dataset", help="offline RL data sets from task logs")
    ds_sub = ds.add_subparsers(dest="dataset_command", metavar="WHAT")
    ds_sub.required = True
    e = ds_sub.add_parser("export", help="rebuild transitions from a task log and write a .npz")
    e.add_argument("--db", required=True, help=DB_HELP)
    e.add_argument("--out", required=True, help="output .npz file")
    e.add_argument("--run", type=COUNT, action="append", metavar="ID",
                   help="run id to export (repeatable; default every run)")
    e.add_argument("--reward-credit", default="slot", type=reward_credit_arg,
                   metavar="{" + ",".join(REWARD_CREDITS) + "[-w<w>]}",
                   help="credit outcomes to the slot they ended in (default), to the decision "
                        "slot, or each node's own outcome to its decision (node), or that minus "
                        "w times the harm it imposed on the other tasks (counterfactual[-w<w>], "
                        "simulated logs only)")
    e.add_argument("--obs-layout", default=OBS_LAYOUT_VERSION, type=obs_layout_option, metavar="LAYOUT",
                   help=f"observation layout (default {OBS_LAYOUT_VERSION}, the paper's; "
                        f"{OBS_LAYOUT_V2} adds what each node probed, for the project settings; "
                        f"o2o-obs-v3 the same in fixed physical scales, independent of the scenario "
                        f"and of N but for the candidate blocks)")
    e.add_argument("--compress", action="store_true", help="write a compressed .npz")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_dataset_export)
    register_suite(ds_sub)

    b = bench.add_parser("logs", help="task-log insert throughput in rows per second")
    add_scenario_args(b)
    b.add_argument("--episodes", type=COUNT, default=16,
                   help="episodes written per transaction (default 16)")
    b.add_argument("--repeats", type=COUNT, default=3, help="timed repeats, best kept (default 3)")
    b.add_argument("--db", default=None,
                   help="also measure this database (e.g. a postgresql+psycopg:// URL); "
                        "the benchmark's runs are deleted afterwards")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=cmd_bench_logs)
