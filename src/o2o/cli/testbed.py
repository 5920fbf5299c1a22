"""``o2o testbed ...`` and ``o2o bench testbed``: argparse and thin handlers over
``o2o.testbed.phase`` (running phases) and ``o2o.testbed.analysis`` (what they measured)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.testbed import wire
from o2o.testbed.analysis import (
    bench_lines,
    bench_summary,
    compare_logs,
    comparison_lines,
    episode_bound_mean,
    measurement_lines,
    simulator_logs,
)
from o2o.testbed.launcher import KillPlan, LocalTestbed
from o2o.testbed.phase import (
    TestbedRun,
    TestbedSetup,
    run_attached,
    run_local,
    run_phase,
)

DEFAULT_DB = "runs/testbed.db"
SCHEDULER_CHOICES = "random, local, ratc, rda, esf, or drl (with --model)"


# ------------------------------------------------------------------------------ shared
def add_scenario_and_runtime_args(p: argparse.ArgumentParser) -> None:
    from o2o.cli.common import add_scenario_args

    add_scenario_args(p, default="paper-testbed")
    p.add_argument("--nodes", type=int, default=None,
                   help="number of edge nodes (default: the scenario's; paper-testbed has 10)")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="first episode seed (default 0)")
    p.add_argument("--exec-mode", choices=["emulated", "compute"], default="emulated",
                   help="emulated: busy for c/F_j seconds (default); compute: burn real CPU work")
    p.add_argument("--compute-scale", type=float, default=1.0,
                   help="real-compute work as a multiple of c/F_j seconds of this host (default 1)")
    p.add_argument("--heartbeat", type=float, default=0.1, metavar="SECONDS",
                   help="node heartbeat period (default 0.1)")
    p.add_argument("--heartbeat-timeout", type=float, default=1.0, metavar="SECONDS",
                   help="a node silent this long is declared dead (default 1.0)")
    p.add_argument("--probe-timeout", type=float, default=0.05, metavar="SECONDS",
                   help="a probe not answered this fast counts as unreachable (default 0.05)")
    p.add_argument("--log-dir", default=None,
                   help="keep the node logs here (default: a temporary folder, removed after a clean run)")


def testbed_setup(args) -> TestbedSetup:
    if args.episodes < 1:
        raise UserError("--episodes must be at least 1")
    overrides = list(args.overrides)
    if args.nodes is not None:
        if args.nodes < 2:
            raise UserError(f"--nodes must be at least 2, got {args.nodes}")
        overrides.append(f"nodes={args.nodes}")
    scenario = load_scenario(args.scenario, overrides)
    if args.heartbeat <= 0 or args.heartbeat_timeout <= args.heartbeat:
        raise UserError("--heartbeat must be > 0 and --heartbeat-timeout longer than --heartbeat")
    if args.probe_timeout <= 0:
        raise UserError("--probe-timeout must be > 0")
    if args.compute_scale <= 0:
        raise UserError("--compute-scale must be > 0")
    runtime = wire.NodeRuntime(heartbeat_s=args.heartbeat, probe_timeout_s=args.probe_timeout,
                               exec_mode=args.exec_mode, compute_scale=args.compute_scale)
    return TestbedSetup(scenario, sample_network(scenario, args.network_seed), runtime,
                        network_seed=args.network_seed, heartbeat_timeout_s=args.heartbeat_timeout,
                        log_dir=args.log_dir)


def check_scheduler(name: str, model: str | None) -> None:
    from o2o.schedulers import HEURISTICS

    if name == "drl":
        if not model:
            raise UserError("--scheduler drl needs --model STORE (a model store folder or URL)")
    elif name == "central":
        raise UserError("central is the simulator's full-information yardstick; it cannot run on "
                        "the decentralized testbed")
    elif name not in HEURISTICS:
        raise UserError(f"unknown scheduler {name!r}; choose from {SCHEDULER_CHOICES}")


def episode_seeds(args) -> list[int]:
    return [args.seed + k for k in range(args.episodes)]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


def print_phase(args, setup: TestbedSetup, seeds: list[int], run: TestbedRun, header: str | None = None) -> int:
    """The table of ``o2o simulate`` for the phase (or its JSON), then what the testbed measured."""
    from o2o.cli.common import format_table, summarize
    from o2o.logs.db import describe_db

    bound = episode_bound_mean(setup.scenario, setup.network, seeds)
    summary = summarize(run.metrics(), extended=not args.json)
    if args.json:
        print(json.dumps({args.scheduler: summary, "bound": bound}))
        return 0
    if header is not None:
        print(header)
    print(format_table({args.scheduler: summary}, bound))
    for line in measurement_lines(run.results):
        print(line)
    print(f"task log: run {run.run_id} in {describe_db(args.db)}")
    return 0


# ------------------------------------------------------------------------------ o2o testbed run
def cmd_run(args) -> int:
    setup = testbed_setup(args)
    check_scheduler(args.scheduler, args.model)
    kills = [KillPlan.parse(text, setup.scenario, args.episodes) for text in args.kill_node]
    seeds = episode_seeds(args)
    _setup_logging(args.verbose)

    run = run_local(setup, args.scheduler, seeds, db=args.db, model=args.model, phase=args.phase,
                    kills=kills, show_progress=not args.json)
    header = (f"testbed: scenario {setup.scenario.name}, {setup.network.n} node processes, network seed "
              f"{args.network_seed}, episodes {seeds[0]}..{seeds[-1]}"
              + (f", model version {run.policy_version}" if run.policy_version else ""))
    return print_phase(args, setup, seeds, run, header)


# ------------------------------------------------------------------------------ o2o testbed compare
def cmd_compare(args) -> int:
    from o2o.logs.db import describe_db

    setup = testbed_setup(args)
    scenario, network = setup.scenario, setup.network
    check_scheduler(args.scheduler, args.model)
    seeds = episode_seeds(args)
    _setup_logging(args.verbose)
    sim_logs = simulator_logs(args.scheduler, args.model, scenario, network, seeds)

    run = run_local(setup, args.scheduler, seeds, db=args.db, model=args.model, phase="compare",
                    show_progress=not args.json)
    out = compare_logs(sim_logs, [r.log for r in run.results], scenario.slot_s)
    out.update({"scheduler": args.scheduler, "scenario": scenario.name, "nodes": network.n,
                "bound": episode_bound_mean(scenario, network, seeds), "run": run.run_id})
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"simulator vs testbed: {args.scheduler}, scenario {scenario.name}, {network.n} nodes, "
          f"network seed {args.network_seed}, the same episodes {seeds[0]}..{seeds[-1]}")
    for line in comparison_lines(out) + measurement_lines(run.results):
        print(line)
    print(f"task log: run {run.run_id} in {describe_db(args.db)}")
    return 0


# ------------------------------------------------------------------------------ o2o bench testbed
def cmd_bench_testbed(args) -> int:
    setup = testbed_setup(args)
    check_scheduler(args.scheduler, None)
    seeds = episode_seeds(args)
    _setup_logging(False)
    load_before = os.getloadavg()
    run = run_local(setup, args.scheduler, seeds, phase="bench", desc="bench testbed",
                    show_progress=not args.json)
    load_after = os.getloadavg()
    sc = setup.scenario
    out = {"scenario": sc.name, "nodes": setup.network.n, "slot_s": sc.slot_s,
           "episodes": len(run.results), "scheduler": args.scheduler, "cpus": os.cpu_count(),
           "load_average_before": list(load_before), "load_average_after": list(load_after),
           **bench_summary(run.results, float(run.metrics()["success_rate"].mean()))}
    if args.json:
        print(json.dumps(out))
        return 0
    for line in bench_lines(out, sc.slots):
        print(line)
    return 0


# ------------------------------------------------------------------------------ o2o testbed controller
def cmd_controller(args) -> int:
    """A controller for nodes started elsewhere (other hosts, Kubernetes pods)."""
    setup = testbed_setup(args)
    check_scheduler(args.scheduler, args.model)
    host, port = wire.parse_host_port(args.listen, "--listen")
    key = wire.token_key(wire.read_token(args.token_file))
    seeds = episode_seeds(args)
    _setup_logging(True)

    run = run_attached(setup, args.scheduler, seeds, key=key, host=host, port=port,
                       wait_nodes_s=args.wait_nodes, db=args.db, model=args.model, phase=args.phase,
                       shutdown_nodes=not args.keep_nodes)
    return print_phase(args, setup, seeds, run)


# ------------------------------------------------------------------------------ o2o testbed trainer
def cmd_trainer(args) -> int:
    from o2o.learn.from_logs import finetune_from_logs, train_offline_from_logs
    from o2o.learn.settings import OfflineSettings, OnlineSettings, with_overrides
    from o2o.logs.store import LogStore
    from o2o.testbed.controller import notify_controller

    if not args.run:
        raise UserError("give the runs to learn from with --run ID (see `o2o logs summary --db ...`)")
    with LogStore.open(args.db) as store:
        if args.mode == "offline":
            if args.steps < 1:
                raise UserError("--steps must be at least 1")
            settings = with_overrides(OfflineSettings(), args.set_hparam)
            published = train_offline_from_logs(store, args.run, args.store, steps=args.steps,
                                                seed=args.seed, settings=settings,
                                                show_progress=not args.json)
        else:
            settings = with_overrides(OnlineSettings(), args.set_hparam)
            published = finetune_from_logs(store, args.run, args.store, seed=args.seed, settings=settings)
    if args.notify:
        host, port = wire.parse_host_port(args.notify, "--notify")
        key = wire.token_key(wire.read_token(args.token_file))
        asyncio.run(notify_controller(host, port, key, published.store, published.version,
                                      published.sha256))
    out = {"store": published.store, "version": published.version, "sha256": published.sha256,
           "mode": args.mode, "runs": args.run, "notified": bool(args.notify)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"published model version {published.version} ({args.mode}, from runs {args.run}) to "
              f"{published.store}, sha256 {published.sha256[:16]}..."
              + (f"; announced to the controller at {args.notify}" if args.notify else ""))
    return 0


# ------------------------------------------------------------------------------ o2o testbed o2o
TRAIN_SEED_BASE = 1_000_000   # training episodes never reuse the evaluation seeds 0, 1, ...


def cmd_o2o(args) -> int:
    """The O2O-DRL pipeline on the testbed (paper VI-B): heuristic logs, offline training,
    online fine-tuning with model hot-swap, evaluation."""
    from o2o.learn.from_logs import finetune_from_logs, train_offline_from_logs
    from o2o.learn.settings import OfflineSettings, OnlineSettings, with_overrides
    from o2o.logs.db import describe_db
    from o2o.logs.store import LogStore

    setup = testbed_setup(args)
    scenario, network, runtime = setup.scenario, setup.network, setup.runtime
    check_scheduler(args.heuristic, None)
    for name, value in (("--collect-episodes", args.collect_episodes), ("--offline-steps", args.offline_steps),
                        ("--online-rounds", args.online_rounds), ("--episodes-per-round", args.episodes_per_round)):
        if value < (0 if name == "--online-rounds" else 1):
            raise UserError(f"{name} must be at least {0 if name == '--online-rounds' else 1}, got {value}")
    offline_settings = with_overrides(OfflineSettings(), args.set_offline)
    online_settings = with_overrides(OnlineSettings(), args.set_online)
    model_store = args.store
    from o2o.models import ModelStore

    if ModelStore(model_store).latest() is not None:
        raise UserError(f"model store {model_store} already holds versions; give a new --store "
                        "folder so that the pipeline's versions are its own")
    eval_seeds = [args.seed + k for k in range(args.episodes)]
    train_seed = TRAIN_SEED_BASE * (args.seed + 1)
    baselines = [b for b in args.baseline if b != args.heuristic]
    _setup_logging(args.verbose)
    quiet = args.json
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))  # noqa: E731

    async def main():
        results: dict[str, TestbedRun] = {}
        with LogStore.open(args.db, create=True) as store:
            async with LocalTestbed(scenario, network, runtime=runtime,
                                    heartbeat_timeout_s=args.heartbeat_timeout, log_dir=args.log_dir) as tb:
                common = dict(network_seed=args.network_seed)
                # 1. Heuristic control: logs of the heuristic (paper VI-B, first part).
                say(f"[1/4] {args.heuristic}: {args.collect_episodes} episodes of logs")
                collect = await run_phase(tb, store, scenario, network, args.heuristic,
                                          [train_seed + k for k in range(args.collect_episodes)],
                                          phase="heuristic", **common)
                # 2. Offline training from the logs; the nodes load the model (hot-swap).
                say(f"[2/4] offline training, {args.offline_steps} steps on run {collect.run_id}")
                offline = await asyncio.to_thread(
                    train_offline_from_logs, store, [collect.run_id], model_store,
                    steps=args.offline_steps, seed=args.seed, settings=offline_settings)
                versions = {"offline": offline.version}
                await tb.controller.announce_model(model_store, offline.version, offline.sha256)
                # 3. Online fine-tuning: episodes with the current model, one PPO update per round.
                current = offline
                first = train_seed + args.collect_episodes
                for r in range(args.online_rounds):
                    seeds = [first + r * args.episodes_per_round + k for k in range(args.episodes_per_round)]
                    say(f"[3/4] online round {r + 1}/{args.online_rounds}: {len(seeds)} episodes with model "
                        f"version {current.version}")
                    online = await run_phase(tb, store, scenario, network, "drl", seeds, phase="online",
                                             policy_version=current.version, **common)
                    current = await asyncio.to_thread(
                        finetune_from_logs, store, [online.run_id], model_store, seed=args.seed + r,
                        settings=online_settings, version=current.version)
                    await tb.controller.announce_model(model_store, current.version, current.sha256)
                versions["o2o"] = current.version
                # 4. Evaluation on the evaluation seeds.
                say(f"[4/4] evaluation: {len(eval_seeds)} episodes each")
                for name in [args.heuristic, *baselines]:
                    results[name] = await run_phase(tb, store, scenario, network, name, eval_seeds,
                                                    phase="evaluation", **common)
                for label, pub in (("offline-only", offline), ("o2o-drl", current)):
                    await tb.controller.announce_model(model_store, pub.version, pub.sha256)
                    results[label] = await run_phase(tb, store, scenario, network, "drl", eval_seeds,
                                                     phase="evaluation", policy_version=pub.version,
                                                     note=label, **common)
                loaded = {i: h.ready for i, h in tb.controller.nodes.items()}
                return results, versions, collect.run_id, loaded

    results, versions, collect_run, loaded = asyncio.run(main())
    from o2o.cli.common import format_table, summarize

    bound = episode_bound_mean(scenario, network, eval_seeds)
    summaries = {name: summarize(run.metrics(), extended=not args.json) for name, run in results.items()}
    # Every node reported the version it loaded, verified by checksum, before each drl phase.
    final_version = versions["o2o"]
    nodes_on_final = sorted(i for i, rounds in loaded.items()
                            if rounds and max(rounds.items())[1].model_version == final_version)
    if args.json:
        print(json.dumps({**summaries, "bound": bound, "model_versions": versions,
                          "nodes_on_final_model": nodes_on_final, "store": model_store}))
        return 0
    print(f"O2O-DRL on the testbed: scenario {scenario.name}, {network.n} node processes, "
          f"{args.collect_episodes} heuristic episodes ({args.heuristic}, run {collect_run}), "
          f"{args.offline_steps} offline steps, {args.online_rounds} x {args.episodes_per_round} online "
          f"episodes; evaluation episodes {eval_seeds[0]}..{eval_seeds[-1]}")
    print(format_table(summaries, bound))
    print(f"models in {model_store}: offline-only = version {versions['offline']}, o2o-drl = version "
          f"{final_version}; nodes {nodes_on_final} ran version {final_version} (checksum verified)")
    print(f"task log: {describe_db(args.db)}")
    return 0


# ------------------------------------------------------------------------------ o2o testbed node
def cmd_node(args) -> int:
    from o2o.testbed.node.cli import run_node

    return run_node(args)


# ------------------------------------------------------------------------------ registration
def add_phase_args(p: argparse.ArgumentParser) -> None:
    """What ``testbed run`` and ``testbed compare`` share: the scheduler, its model, the task
    log and the output."""
    p.add_argument("--scheduler", default="ratc", help=SCHEDULER_CHOICES + " (default ratc)")
    p.add_argument("--model", default=None, help="model store (folder or fsspec URL) for --scheduler drl")
    p.add_argument("--db", default=DEFAULT_DB, help=f"task log: SQLite path or database URL (default {DEFAULT_DB})")
    p.add_argument("--json", action="store_true", help="print one JSON object (as o2o simulate)")
    p.add_argument("--verbose", action="store_true", help="log the controller's events on stderr")


def register(sub, bench) -> None:
    from o2o.testbed.node.cli import add_node_args

    tb = sub.add_parser("testbed", help="real edge-node processes over TCP (paper VI)")
    tsub = tb.add_subparsers(dest="testbed_command", metavar="WHAT")
    tsub.required = True

    r = tsub.add_parser("run", help="bring up a controller and N node processes on loopback and run episodes")
    add_scenario_and_runtime_args(r)
    add_phase_args(r)
    r.add_argument("--phase", default="heuristic", help="phase recorded with the run (default heuristic)")
    r.add_argument("--kill-node", action="append", default=[], metavar="I@SLOT",
                   help="SIGKILL node I at slot SLOT of the first episode (or I@EPISODE:SLOT); "
                        "it is restarted and rejoins at the next episode (repeatable)")
    r.set_defaults(func=cmd_run)

    c = tsub.add_parser("compare", help="the same episodes in the simulator and on the testbed, side by side")
    add_scenario_and_runtime_args(c)
    add_phase_args(c)
    c.set_defaults(func=cmd_compare)

    b = bench.add_parser("testbed", help="testbed slot-clock lateness and payload transfer times")
    add_scenario_and_runtime_args(b)
    b.set_defaults(episodes=3)
    b.add_argument("--scheduler", default="ratc", help="heuristic to run (default ratc)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=cmd_bench_testbed)

    ctl = tsub.add_parser("controller", help="run a controller for nodes started elsewhere (e.g. Kubernetes)")
    add_scenario_and_runtime_args(ctl)
    ctl.add_argument("--listen", default="0.0.0.0:7000", metavar="HOST:PORT",
                     help="where nodes and trainers reach the controller (default 0.0.0.0:7000)")
    ctl.add_argument("--token-file", default=None, help=f"file with the shared token (default: ${wire.TOKEN_ENV})")
    ctl.add_argument("--wait-nodes", type=float, default=300.0, metavar="SECONDS",
                     help="how long to wait for all nodes to register (default 300)")
    ctl.add_argument("--scheduler", default="ratc", help=SCHEDULER_CHOICES + " (default ratc)")
    ctl.add_argument("--model", default=None, help="model store for --scheduler drl")
    ctl.add_argument("--db", default=DEFAULT_DB, help=f"task log (default {DEFAULT_DB})")
    ctl.add_argument("--phase", default="heuristic")
    ctl.add_argument("--keep-nodes", action="store_true",
                     help="do not ask the nodes to exit at the end (they wait for the next controller)")
    ctl.add_argument("--json", action="store_true")
    ctl.set_defaults(func=cmd_controller)

    tr = tsub.add_parser("trainer", help="train from the testbed's task logs and publish to the model store")
    tr.add_argument("--db", required=True, help="task log to read")
    tr.add_argument("--run", type=int, action="append", default=[], metavar="ID",
                    help="run(s) to learn from (repeatable)")
    tr.add_argument("--store", required=True, help="model store: a folder or fsspec URL")
    tr.add_argument("--mode", choices=["offline", "online"], default="offline",
                    help="offline: Algorithm 1 on the runs; online: one Algorithm 2 update on episodes "
                         "run with the store's latest model")
    tr.add_argument("--steps", type=int, default=5000, help="offline gradient steps (default 5000)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--set-hparam", action="append", default=[], metavar="KEY=VALUE",
                    help="override a learner setting (repeatable)")
    tr.add_argument("--notify", default=None, metavar="HOST:PORT",
                    help="announce the new version to the controller there (admin connection)")
    tr.add_argument("--token-file", default=None, help=f"token for --notify (default: ${wire.TOKEN_ENV})")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=cmd_trainer)

    o = tsub.add_parser("o2o", help="the O2O-DRL pipeline on the testbed (paper VI-B)")
    add_scenario_and_runtime_args(o)
    o.add_argument("--heuristic", default="ratc", help="heuristic that collects the logs (default ratc)")
    o.add_argument("--baseline", action="append", default=["rda"], metavar="NAME",
                   help="other heuristics to evaluate (default rda; repeatable)")
    o.add_argument("--collect-episodes", type=int, default=20)
    o.add_argument("--offline-steps", type=int, default=3000)
    o.add_argument("--online-rounds", type=int, default=5, help="fine-tuning rounds (one PPO update each)")
    o.add_argument("--episodes-per-round", type=int, default=2)
    o.add_argument("--store", required=True, help="a new model store folder (or fsspec URL) for this pipeline")
    o.add_argument("--db", default=DEFAULT_DB, help=f"task log (default {DEFAULT_DB})")
    o.add_argument("--set-offline", action="append", default=[], metavar="KEY=VALUE")
    o.add_argument("--set-online", action="append", default=[], metavar="KEY=VALUE")
    o.add_argument("--json", action="store_true")
    o.add_argument("--verbose", action="store_true")
    o.set_defaults(func=cmd_o2o)

    n = tsub.add_parser("node", help="run one edge node (connects to a controller)")
    add_node_args(n)
    n.set_defaults(func=cmd_node)
