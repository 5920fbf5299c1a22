"""``o2o testbed ...`` and ``o2o bench testbed``: argparse and thin handlers over
``o2o.testbed.phase`` (running phases) and ``o2o.testbed.analysis`` (what they measured)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import math
import os
import sys

from o2o.cli.common import COUNT, SEED, TESTBED_EPISODES, TRAINING_SEED, at_least
from o2o.cli.learn import add_obs_layout_arg, add_reward_credit_arg, add_settings_arg
from o2o.core import seeds
from o2o.core.errors import UserError
from o2o.core.limits import check_counts, check_testbed
from o2o.core.network import sample_network
from o2o.core.outputs import check_output_folder
from o2o.core.scenario import load_scenario
from o2o.learn.settings import learner_settings
from o2o.sim import CENTRAL
from o2o.testbed import wire
from o2o.testbed.analysis import (
    bench_lines,
    bench_summary,
    compare_logs,
    comparison_lines,
    episode_bounds_mean,
    measurement_lines,
    pacing_comparison_lines,
    simulator_logs,
)
from o2o.testbed.launcher import KillPlan
from o2o.testbed.phase import (
    TestbedRun,
    TestbedSetup,
    params_text,
    run_attached,
    run_local,
)

DEFAULT_DB = "runs/testbed.db"
SCHEDULER_CHOICES = "random, local, ratc, rda, esf, spread, slack-reliable, slack-reliable-k, or drl (with --model)"


# ------------------------------------------------------------------------------ shared
def add_scenario_and_runtime_args(p: argparse.ArgumentParser) -> None:
    from o2o.cli.common import add_scenario_args

    add_scenario_args(p, default="paper-testbed")
    p.add_argument("--nodes", type=at_least(2), default=None,
                   help="number of edge nodes (default: the scenario's; paper-testbed has 10)")
    p.add_argument("--episodes", type=TESTBED_EPISODES, default=5, help="episodes to run (default 5)")
    p.add_argument("--seed", type=SEED, default=0, help="first episode seed (default 0)")
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


def add_hosts_args(p: argparse.ArgumentParser, both: bool = False) -> None:
    """Where the launched processes live and who paces the links."""
    p.add_argument("--hosts", choices=["local", "netns"], default="local",
                   help="local: every process on loopback (default); netns: the controller and each node "
                        "in a network namespace of its own on one bridge, links shaped by the kernel "
                        "(root only)")
    p.add_argument("--subnet", default=None, metavar="CIDR",
                   help="--hosts netns: the test network, a private range in use nowhere on this machine "
                        "(default: a free /24 is chosen); its first address is the bridge's")
    p.add_argument("--pacing", choices=["user", "kernel", "both"] if both else ["user", "kernel"], default=None,
                   help="who holds each link to r_ij: user = the sending node paces its payloads, kernel = "
                        "an htb class per link (--hosts netns only)"
                        + ("; both = one run each, side by side" if both else "")
                        + " (default: kernel with --hosts netns, else user)")


def check_hosts_args(args, nodes: int) -> None:
    """``--hosts netns`` needs root, a usable subnet and a database on the bridge; the checks
    that need nothing to exist yet, before anything is started."""
    hosts = getattr(args, "hosts", "local")
    if hosts != "netns":
        if getattr(args, "subnet", None) is not None:
            raise UserError("--subnet is for --hosts netns")
        if getattr(args, "pacing", None) in ("kernel", "both"):
            raise UserError(f"--pacing {args.pacing} needs --hosts netns (the kernel shapes the links of "
                            "the namespaces)")
        return
    from o2o.testbed import netns

    netns.require_root()
    if args.subnet is not None:
        netns.choose_subnet(args.subnet, nodes, netns.networks_in_use())
    if getattr(args, "db", None) is not None:
        netns.check_db_on_bridge(args.db, args.subnet)


def pacing_of(args) -> str:
    """The pacing of the (first) run: ``both`` starts with the kernel's."""
    pacing = getattr(args, "pacing", None)
    if pacing in ("user", "kernel"):
        return pacing
    return "kernel" if pacing == "both" or getattr(args, "hosts", "local") == "netns" else "user"


def testbed_setup(args) -> TestbedSetup:
    overrides = list(args.overrides)
    if args.nodes is not None:
        overrides.append(f"nodes={args.nodes}")
    scenario = load_scenario(args.scenario, overrides)
    check_testbed(scenario.nodes)
    for option in ("heartbeat", "heartbeat_timeout", "probe_timeout", "compute_scale", "wait_nodes"):
        value = getattr(args, option, 1.0)
        if not (math.isfinite(value) and value > 0):  # NaN fails every comparison
            raise UserError(f"--{option.replace('_', '-')} must be a finite number > 0, got {value}")
    if args.heartbeat_timeout <= args.heartbeat:
        raise UserError("--heartbeat must be > 0 and --heartbeat-timeout longer than --heartbeat")
    check_output_folder(args.log_dir, "--log-dir")
    check_hosts_args(args, scenario.nodes)
    runtime = wire.NodeRuntime(heartbeat_s=args.heartbeat, probe_timeout_s=args.probe_timeout,
                               exec_mode=args.exec_mode, compute_scale=args.compute_scale,
                               pacing=pacing_of(args))
    return TestbedSetup(scenario, sample_network(scenario, args.network_seed), runtime,
                        network_seed=args.network_seed, heartbeat_timeout_s=args.heartbeat_timeout,
                        log_dir=args.log_dir, hosts=getattr(args, "hosts", "local"),
                        subnet=getattr(args, "subnet", None))


#: Where a model folder given to the testbed (``--model pretrained:general``, a folder written by
#: ``o2o train``) is copied as version 1 of a model store, which the nodes load from.
MODEL_STORES = "runs/testbed-model-stores"


def check_scheduler(name: str, model: str | None, setup=None) -> str | None:
    """Refuse a scheduler the testbed cannot run; the model store ``drl`` nodes load from (a
    model folder is checked against ``setup``'s network and scenario before it is copied)."""
    from o2o.models import as_store
    from o2o.schedulers import HEURISTICS

    if name == "drl":
        if not model:
            raise UserError("--scheduler drl needs --model STORE (a model store, a model folder or "
                            "pretrained:NAME)")
        return as_store(model, MODEL_STORES, *((setup.network.n, setup.scenario) if setup else ()))
    elif name in CENTRAL:
        raise UserError(f"{name} is the simulator's full-information yardstick; it cannot run on "
                        "the decentralized testbed")
    elif name not in HEURISTICS:
        raise UserError(f"unknown scheduler {name!r}; choose from {SCHEDULER_CHOICES}")
    return model


def tuned_scheduler(args, setup) -> dict | None:
    """``--tuned FILE``: the record of ``o2o tune`` the scheduler runs with, checked against the
    scenario and network seed; it names the scheduler when ``--scheduler`` is not given (else
    ``ratc``). The nodes then build that rule at the record's values."""
    from o2o.experiments.tuning import load_tuned_files

    record = None
    if args.tuned:
        (record,) = load_tuned_files([args.tuned], setup.scenario, setup.network_seed).values()
        if args.scheduler not in (None, record["scheduler"]):
            raise UserError(f"--tuned {args.tuned} is a tuning of {record['scheduler']}, not of "
                            f"--scheduler {args.scheduler}; give --scheduler {record['scheduler']} or drop it")
        args.scheduler = record["scheduler"]
    args.scheduler = args.scheduler or "ratc"
    return record


def episode_seeds(args) -> list[int]:
    return [args.seed + k for k in range(args.episodes)]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


def print_phase(args, setup: TestbedSetup, seeds: list[int], run: TestbedRun, header: str | None = None,
                tuned: dict | None = None) -> int:
    """The table of ``o2o simulate`` for the phase (or its JSON), then what the testbed measured;
    a rule run at ``tuned``'s values has them (``params``, ``tuned``) as in ``o2o simulate``."""
    from o2o.cli.common import format_table, summarize
    from o2o.logs.db import describe_db

    bounds = episode_bounds_mean(setup.scenario, setup.network, seeds)
    summary = summarize(run.metrics(), extended=not args.json)
    if tuned is not None:
        from o2o.experiments.tuning import summary as tuned_summary

        summary.update(params=dict(tuned["params"]), tuned=tuned_summary(tuned))
    if args.json:
        print(json.dumps({args.scheduler: summary, **bounds}))
        return 0
    if header is not None:
        print(header)
    print(format_table({args.scheduler: summary}, bounds))
    for line in measurement_lines(run.results):
        print(line)
    print(f"task log: run {run.run_id} in {describe_db(args.db)}")
    return 0


# ------------------------------------------------------------------------------ o2o testbed run
def cmd_run(args) -> int:
    setup = testbed_setup(args)
    tuned = tuned_scheduler(args, setup)
    args.model = check_scheduler(args.scheduler, args.model, setup)
    kills = [KillPlan.parse(text, setup.scenario, args.episodes) for text in args.kill_node]
    seeds = episode_seeds(args)
    _setup_logging(args.verbose)

    run = run_local(setup, args.scheduler, seeds, db=args.db, model=args.model, phase=args.phase,
                    kills=kills, show_progress=not args.json, params=tuned and tuned["params"])
    header = (f"testbed: scenario {setup.scenario.name}, {setup.network.n} node processes, network seed "
              f"{args.network_seed}, episodes {seeds[0]}..{seeds[-1]}"
              + (f", model version {run.policy_version}" if run.policy_version else "")
              + (f"\nhosts: {run.where}" if run.where else ""))
    return print_phase(args, setup, seeds, run, header, tuned)


# ------------------------------------------------------------------------------ o2o testbed compare
def cmd_compare(args) -> int:
    from o2o.logs.db import describe_db

    setup = testbed_setup(args)
    scenario, network = setup.scenario, setup.network
    tuned = tuned_scheduler(args, setup)
    params = tuned and tuned["params"]
    args.model = check_scheduler(args.scheduler, args.model, setup)
    seeds = episode_seeds(args)
    _setup_logging(args.verbose)
    sim_logs = simulator_logs(args.scheduler, args.model, scenario, network, seeds, params=params)

    run = run_local(setup, args.scheduler, seeds, db=args.db, model=args.model, phase="compare",
                    show_progress=not args.json, params=params)
    out = compare_logs(sim_logs, [r.log for r in run.results], scenario.slot_s)
    out.update({"scheduler": args.scheduler, **({"params": dict(params)} if params else {}),
                "scenario": scenario.name, "nodes": network.n,
                **episode_bounds_mean(scenario, network, seeds), "run": run.run_id,
                "hosts": setup.hosts, "pacing": setup.runtime.pacing})
    if args.json:
        print(json.dumps(out))
        return 0
    at = f" at {params_text(params)}" if params else ""
    print(f"simulator vs testbed: {args.scheduler}{at}, scenario {scenario.name}, {network.n} nodes, "
          f"network seed {args.network_seed}, the same episodes {seeds[0]}..{seeds[-1]}")
    if run.where:
        print(f"hosts: {run.where}")
    for line in comparison_lines(out) + measurement_lines(run.results):
        print(line)
    print(f"task log: run {run.run_id} in {describe_db(args.db)}")
    return 0


# ------------------------------------------------------------------------------ o2o bench testbed
def cmd_bench_testbed(args) -> int:
    both = args.pacing == "both"
    setup = testbed_setup(args)
    check_scheduler(args.scheduler, None)
    seeds = episode_seeds(args)
    _setup_logging(False)
    pacings = ["kernel", "user"] if both else [setup.runtime.pacing]
    outs = {}
    for pacing in pacings:
        s = dataclasses.replace(setup, runtime=setup.runtime.model_copy(update={"pacing": pacing}))
        load_before = os.getloadavg()
        run = run_local(s, args.scheduler, seeds, phase="bench", desc=f"bench testbed ({pacing} pacing)",
                        show_progress=not args.json)
        load_after = os.getloadavg()
        sc = setup.scenario
        outs[pacing] = {
            "scenario": sc.name, "nodes": setup.network.n, "slot_s": sc.slot_s, "episodes": len(run.results),
            "scheduler": args.scheduler, "cpus": os.cpu_count(), "hosts": setup.hosts, "pacing": pacing,
            "where": run.where, "load_average_before": list(load_before), "load_average_after": list(load_after),
            **bench_summary(run.results, float(run.metrics()["success_rate"].mean()))}
    out = outs[pacings[0]] if not both else {"kernel": outs["kernel"], "user": outs["user"]}
    if args.json:
        print(json.dumps(out))
        return 0
    for k, pacing in enumerate(pacings):
        if k:
            print()
        for line in bench_lines(outs[pacing], setup.scenario.slots):
            print(line)
    if both:
        print()
        for line in pacing_comparison_lines(outs["kernel"], outs["user"]):
            print(line)
    return 0


# ------------------------------------------------------------------------------ o2o testbed controller
def cmd_controller(args) -> int:
    """A controller for nodes started elsewhere (other hosts, Kubernetes pods)."""
    setup = testbed_setup(args)
    tuned = tuned_scheduler(args, setup)
    args.model = check_scheduler(args.scheduler, args.model, setup)
    host, port = wire.parse_host_port(args.listen, "--listen")
    key = wire.token_key(wire.read_token(args.token_file))
    seeds = episode_seeds(args)
    _setup_logging(True)

    run = run_attached(setup, args.scheduler, seeds, key=key, host=host, port=port,
                       wait_nodes_s=args.wait_nodes, db=args.db, model=args.model, phase=args.phase,
                       shutdown_nodes=not args.keep_nodes, params=tuned and tuned["params"])
    return print_phase(args, setup, seeds, run, tuned=tuned)


# ------------------------------------------------------------------------------ o2o testbed trainer
def cmd_trainer(args) -> int:
    from o2o.learn.from_logs import finetune_from_logs, train_offline_from_logs
    from o2o.logs.store import LogStore
    from o2o.testbed.controller import notify_controller

    if not args.run:
        raise UserError("give the runs to learn from with --run ID (see `o2o logs summary --db ...`)")
    settings = learner_settings(args.settings, **{args.mode: args.set_hparam},
                                reward_credit=args.reward_credit)
    check_output_folder(args.store, "--store")
    if args.notify:  # checked before training, not after it
        host, port = wire.parse_host_port(args.notify, "--notify")
        key = wire.token_key(wire.read_token(args.token_file))
    with LogStore.open(args.db, read_only=True) as store:
        if args.mode == "offline":
            steps = args.steps or settings.offline_steps
            published = train_offline_from_logs(store, args.run, args.store, steps=steps,
                                                seed=args.seed, settings=settings.offline,
                                                reward_credit=settings.reward_credit,
                                                obs_layout=settings.obs_layout,
                                                show_progress=not args.json)
        else:
            published = finetune_from_logs(store, args.run, args.store, seed=args.seed,
                                           settings=settings.online)
    if args.notify:
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
def cmd_o2o(args) -> int:
    """The O2O-DRL pipeline on the testbed (paper VI-B): ``o2o.experiments.testbed_job``."""
    from o2o.cli.common import format_table, summarize
    from o2o.experiments.testbed_job import TestbedPlan, run_testbed_o2o
    from o2o.logs.db import describe_db

    setup = testbed_setup(args)
    for name in [args.heuristic or "ratc", *args.baseline]:
        check_scheduler(name, None)
    check_output_folder(args.store, "--store")
    plan = TestbedPlan(args.collect_episodes, args.offline_steps, args.online_rounds,
                       args.episodes_per_round, args.episodes)
    check_counts(dataclasses.asdict(plan), options=True)
    settings = learner_settings(args.settings, args.set_offline, args.set_online, args.reward_credit,
                                args.obs_layout, log_tuned=args.log_tuned,
                                options=("--set-offline", "--set-online"))
    heuristic = args.heuristic or settings.log_heuristic
    from o2o.experiments.tuning import load_tuned_files

    tuned = load_tuned_files(args.tuned, setup.scenario, setup.network_seed)
    unused = sorted(set(tuned) - ({heuristic} if settings.log_tuned else set()) - set(args.baseline))
    if unused:
        raise UserError(f"--tuned gives values for {', '.join(unused)}, which this pipeline does not run "
                        "at tuned values: a baseline (--baseline NAME) or the logging heuristic with "
                        "--log-tuned uses a --tuned file")
    _setup_logging(args.verbose)
    say = (lambda _msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    report = run_testbed_o2o(setup, plan, settings, db=args.db, model_store=args.store,
                             heuristic=heuristic, baselines=args.baseline,
                             training_seed=args.training_seed, eval_seeds=episode_seeds(args), say=say,
                             tuned=tuned)
    scenario, network = setup.scenario, setup.network
    bounds = episode_bounds_mean(scenario, network, report.eval_seeds)
    summaries = {name: summarize(run.metrics(), extended=not args.json) for name, run in report.runs.items()}
    if args.json:
        print(json.dumps({**summaries, **bounds, "log_params": report.log_params,
                          "model_versions": report.versions,
                          "nodes_on_final_model": report.nodes_on_final_model, "store": args.store}))
        return 0
    print(f"O2O-DRL on the testbed: scenario {scenario.name}, {network.n} node processes, "
          f"{plan.collect_episodes} heuristic episodes ({heuristic}"
          + (f" at {params_text(report.log_params)}" if report.log_params else "")
          + f", run {report.collect_run}), "
          f"{plan.offline_steps} offline steps, {plan.online_rounds} x {plan.episodes_per_round} online "
          f"episodes; evaluation episodes {report.eval_seeds[0]}..{report.eval_seeds[-1]}")
    print(format_table(summaries, bounds))
    final = report.versions["o2o"]
    print(f"models in {args.store}: offline-only = version {report.versions['offline']}, o2o-drl = "
          f"version {final}; nodes {report.nodes_on_final_model} ran version {final} (checksum verified)")
    print(f"task log: {describe_db(args.db)}")
    return 0


# ------------------------------------------------------------------------------ o2o testbed node
def cmd_node(args) -> int:
    from o2o.testbed.node.cli import run_node

    return run_node(args)


# ------------------------------------------------------------------------------ registration
def add_tuned_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tuned", default=None, metavar="FILE",
                   help="a file of 'o2o tune' for this scenario and network seed: the nodes run its rule "
                        "at the tuned values")


def add_phase_args(p: argparse.ArgumentParser) -> None:
    """What ``testbed run`` and ``testbed compare`` share: the scheduler, its model, the task
    log and the output."""
    p.add_argument("--scheduler", default=None, help=SCHEDULER_CHOICES + " (default ratc, or --tuned's)")
    add_tuned_arg(p)
    p.add_argument("--model", default=None, help="model store (folder or fsspec URL) for --scheduler drl")
    p.add_argument("--db", default=DEFAULT_DB, help=f"task log: SQLite path or database URL (default {DEFAULT_DB})")
    p.add_argument("--json", action="store_true", help="print one JSON object (as o2o simulate)")
    p.add_argument("--verbose", action="store_true", help="log the controller's events on stderr")


def register(sub, bench) -> None:
    from o2o.testbed.node.cli import add_node_args

    tb = sub.add_parser("testbed", help="real edge-node processes over TCP (paper VI)")
    tsub = tb.add_subparsers(dest="testbed_command", metavar="WHAT")
    tsub.required = True

    r = tsub.add_parser("run", help="bring up a controller and N node processes (loopback or network "
                                    "namespaces) and run episodes")
    add_scenario_and_runtime_args(r)
    add_hosts_args(r)
    add_phase_args(r)
    r.add_argument("--phase", default="heuristic", help="phase recorded with the run (default heuristic)")
    r.add_argument("--kill-node", action="append", default=[], metavar="I@SLOT",
                   help="SIGKILL node I at slot SLOT of the first episode (or I@EPISODE:SLOT); "
                        "it is restarted and rejoins at the next episode (repeatable)")
    r.set_defaults(func=cmd_run)

    c = tsub.add_parser("compare", help="the same episodes in the simulator and on the testbed, side by side")
    add_scenario_and_runtime_args(c)
    add_hosts_args(c)
    add_phase_args(c)
    c.set_defaults(func=cmd_compare)

    b = bench.add_parser("testbed", help="testbed slot-clock lateness and payload transfer times")
    add_scenario_and_runtime_args(b)
    add_hosts_args(b, both=True)
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
    ctl.add_argument("--scheduler", default=None, help=SCHEDULER_CHOICES + " (default ratc, or --tuned's)")
    add_tuned_arg(ctl)
    ctl.add_argument("--model", default=None, help="model store for --scheduler drl")
    ctl.add_argument("--db", default=DEFAULT_DB, help=f"task log (default {DEFAULT_DB})")
    ctl.add_argument("--phase", default="heuristic", help="phase recorded with the run (default heuristic)")
    ctl.add_argument("--keep-nodes", action="store_true",
                     help="do not ask the nodes to exit at the end (they wait for the next controller)")
    ctl.add_argument("--json", action="store_true", help="print one JSON object")
    ctl.set_defaults(func=cmd_controller)

    tr = tsub.add_parser("trainer", help="train from the testbed's task logs and publish to the model store")
    tr.add_argument("--db", required=True, help="task log to read")
    tr.add_argument("--run", type=COUNT, action="append", default=[], metavar="ID",
                    help="run(s) to learn from (repeatable)")
    tr.add_argument("--store", required=True, help="model store: a folder or fsspec URL")
    tr.add_argument("--mode", choices=["offline", "online"], default="offline",
                    help="offline: the settings' offline algorithm on the runs (project: advantage-weighted "
                         "regression, paper: Algorithm 1); online: one Algorithm 2 update on episodes "
                         "run with the store's latest model")
    tr.add_argument("--steps", type=COUNT, default=None,
                    help="offline gradient steps (default: the settings', 2000 project, 10000 paper)")
    tr.add_argument("--seed", type=TRAINING_SEED, default=0, help="training seed (default 0)")
    add_settings_arg(tr)
    add_reward_credit_arg(tr, "offline: of the data set, default the settings'; online: the model's")
    tr.add_argument("--set-hparam", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the chosen --mode's algorithm (repeatable)")
    tr.add_argument("--notify", default=None, metavar="HOST:PORT",
                    help="announce the new version to the controller there (admin connection)")
    tr.add_argument("--token-file", default=None, help=f"token for --notify (default: ${wire.TOKEN_ENV})")
    tr.add_argument("--json", action="store_true", help="print one JSON object")
    tr.set_defaults(func=cmd_trainer)

    o = tsub.add_parser("o2o", help="the O2O-DRL pipeline on the testbed (paper VI-B)")
    add_scenario_and_runtime_args(o)
    o.add_argument("--heuristic", default=None,
                   help="heuristic that collects the logs (default: the settings'; project: spread, "
                        "paper: ratc)")
    o.add_argument("--baseline", action="append", default=["rda"], metavar="NAME",
                   help="other heuristics to evaluate (default rda; repeatable)")
    o.add_argument("--log-tuned", action=argparse.BooleanOptionalAction, default=None,
                   help="run a tunable logging heuristic at its values for this network: a --tuned "
                        "file's, else tuned in the simulator on validation episodes before the nodes "
                        "start (default: the settings')")
    o.add_argument("--tuned", action="append", default=[], metavar="FILE",
                   help="a file of 'o2o tune' for this scenario and network seed: the logging heuristic "
                        "(with --log-tuned) or a --baseline runs at its values (repeatable)")
    o.set_defaults(seed=seeds.TEST.start)
    o.add_argument("--collect-episodes", type=TESTBED_EPISODES, default=20,
                   help="heuristic episodes logged for offline training (default 20)")
    o.add_argument("--offline-steps", type=COUNT, default=3000, help="offline gradient steps (default 3000)")
    o.add_argument("--online-rounds", type=at_least(0), default=5,
                   help="fine-tuning rounds, one PPO update each (default 5)")
    o.add_argument("--episodes-per-round", type=TESTBED_EPISODES, default=2, help="episodes per round (default 2)")
    o.add_argument("--training-seed", type=TRAINING_SEED, default=0, help="training seed (default 0)")
    o.add_argument("--store", required=True, help="a new model store folder (or fsspec URL) for this pipeline")
    o.add_argument("--db", default=DEFAULT_DB, help=f"task log (default {DEFAULT_DB})")
    add_settings_arg(o)
    add_reward_credit_arg(o, "of the logged data set; default the settings'")
    add_obs_layout_arg(o, "of the logged data set; default the settings' (project: v2, paper: v1)")
    o.add_argument("--set-offline", action="append", default=[], metavar="KEY=VALUE",
                   help="override an offline hyper-parameter (repeatable)")
    o.add_argument("--set-online", action="append", default=[], metavar="KEY=VALUE",
                   help="override an online hyper-parameter (repeatable)")
    o.add_argument("--json", action="store_true", help="print one JSON object")
    o.add_argument("--verbose", action="store_true", help="log the controller's events on stderr")
    o.set_defaults(func=cmd_o2o)

    n = tsub.add_parser("node", help="run one edge node (connects to a controller)")
    add_node_args(n)
    n.set_defaults(func=cmd_node)
