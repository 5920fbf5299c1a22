"""``o2o testbed ...`` and ``o2o bench testbed``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from o2o.core.errors import UserError
from o2o.core.network import Network, sample_network
from o2o.core.progress import progress_bar
from o2o.core.scenario import Scenario, load_scenario
from o2o.testbed import wire
from o2o.testbed.controller import EpisodeResult, lateness_summary
from o2o.testbed.launcher import KillPlan, LocalTestbed
from o2o.testbed.recorder import stack_metrics
from o2o.testbed.timing import percentile

DEFAULT_DB = "runs/testbed.db"
SLOT_CLOCK_P99_TARGET_MS = 10.0
TRANSFER_TOLERANCE = 0.10
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


def testbed_setup(args) -> tuple[Scenario, Network, wire.NodeRuntime]:
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
    return scenario, sample_network(scenario, args.network_seed), runtime


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


def latest_model(store_url: str, nodes: int) -> tuple[int, str]:
    """(version, sha256) of the store's latest model, checked for this many nodes."""
    from o2o.models import ModelError, ModelStore

    store = ModelStore(store_url)
    version = store.latest()
    if version is None:
        raise ModelError(f"model store {store_url} has no versions yet (train one with "
                         "`o2o testbed trainer` or `o2o train offline`)")
    model = store.load(version, nodes=nodes)
    return version, model.manifest["sha256"]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


@dataclass
class TestbedRun:
    """What one ``run_on_testbed`` produced."""

    results: list[EpisodeResult]
    run_id: int | None = None
    killed: list[dict] = field(default_factory=list)
    policy_version: int | None = None

    def metrics(self) -> dict[str, np.ndarray]:
        return stack_metrics([r.metrics for r in self.results])


async def run_phase(tb: LocalTestbed, store, scenario: Scenario, network: Network, scheduler: str,
                    seeds: list[int], *, network_seed: int, phase: str, kills=(), first_index: int = 0,
                    policy_version: int | None = None, progress=None, note: str | None = None) -> TestbedRun:
    """Run ``seeds`` with ``scheduler`` on a started testbed; write the task log as one run."""
    writer = None
    if store is not None:
        writer = await asyncio.to_thread(
            store.start_run, scenario, network, scheduler, source="testbed", phase=phase,
            network_seed=network_seed, policy_version=None if policy_version is None else str(policy_version),
            note=note)
    results: list[EpisodeResult] = []

    async def on_episode(result: EpisodeResult) -> None:
        if writer is not None:
            await asyncio.to_thread(writer.write_episodes, [result.log])
        if progress is not None:
            progress(1)

    try:
        for k, seed in enumerate(seeds):
            got = await tb.run(scheduler, [seed], first_index=first_index + k,
                               kills=[KillPlan(p.node, 0, p.slot) for p in kills if p.episode == k])
            await on_episode(got[0])
            results.extend(got)
    except BaseException:
        if writer is not None:
            await asyncio.to_thread(writer.finish, "interrupted")
        raise
    if writer is not None:
        await asyncio.to_thread(writer.finish, "completed")
    return TestbedRun(results, run_id=None if writer is None else writer.run_id,
                      killed=list(tb.killed), policy_version=policy_version)


def measurement_lines(results: list[EpisodeResult]) -> list[str]:
    clock = lateness_summary(x for r in results for x in r.clock_lateness_s)
    delivery = lateness_summary(x for r in results for x in r.delivery_lateness_s)
    ratios = transfer_ratios(results)
    lines = [f"slot clock lateness p50 {clock['p50_ms']:.2f} ms, p99 {clock['p99_ms']:.2f} ms; "
             f"slot message at the nodes p99 {delivery['p99_ms']:.2f} ms"]
    if ratios.size:
        lines.append(f"payload transfer time / (s/r_ij): median {np.median(ratios):.3f}, "
                     f"p99 {percentile(ratios, 99):.3f} over {ratios.size} transfers")
    deaths = [d for r in results for d in r.deaths]
    for d in deaths:
        lines.append(f"node {d['node']} lost at {d['at_s']:.3f} s (slot {d['slot']}) by {d['detected_by']}")
    stuck = sum(r.gave_up for r in results)
    if stuck:
        lines.append(f"warning: {stuck} task(s) had no outcome after the drain and count as failures")
    return lines


def transfer_ratios(results: list[EpisodeResult], side: str = "transfers") -> np.ndarray:
    """Measured transfer time / (s / r_ij): at the receivers (``transfers``, end to end) or at
    the senders (``sent``: the pacing alone)."""
    t = np.asarray([x for r in results for x in getattr(r, side)], dtype=float).reshape(-1, 3)
    return t[:, 2] / (t[:, 0] / t[:, 1]) if t.size else np.zeros(0)


def ratio_summary(ratios: np.ndarray) -> dict:
    if not ratios.size:
        return {"count": 0}
    return {"count": int(ratios.size), "min": float(ratios.min()), "median": float(np.median(ratios)),
            "p95": percentile(ratios, 95), "p99": percentile(ratios, 99), "max": float(ratios.max()),
            "within_10pct": float(np.mean(np.abs(ratios - 1) <= TRANSFER_TOLERANCE))}


def summary_table(name: str, metrics: dict, bound: float, extended: bool) -> tuple[dict, str]:
    from o2o.cli.common import format_table, summarize

    summary = summarize(metrics, extended=extended)
    return summary, format_table({name: summary}, bound)


def episode_bound_mean(scenario: Scenario, network: Network, seeds: list[int]) -> float:
    from o2o.core.episodes import sample_episodes
    from o2o.sim import episode_bound

    return float(episode_bound(network, sample_episodes(scenario, network, seeds)).mean())


def run_testbed_phase(args, scenario: Scenario, network: Network, runtime, seeds: list[int],
                      phase: str, kills: list) -> "TestbedRun":
    """Bring a local testbed up, run ``args.scheduler`` (a ``drl`` model announced first) on
    ``seeds`` with the task log in ``args.db``, and take it down; shared by run and compare."""
    from o2o.logs.store import LogStore

    async def main() -> TestbedRun:
        with LogStore.open(args.db, create=True) as store:
            async with LocalTestbed(scenario, network, runtime=runtime,
                                    heartbeat_timeout_s=args.heartbeat_timeout,
                                    log_dir=args.log_dir) as tb:
                version = None
                if args.scheduler == "drl":
                    version, sha = latest_model(args.model, network.n)
                    await tb.controller.announce_model(args.model, version, sha)
                with progress_bar(total=len(seeds), desc=f"testbed {args.scheduler}", unit="episode",
                                  disable=args.json) as bar:
                    return await run_phase(tb, store, scenario, network, args.scheduler, seeds,
                                           network_seed=args.network_seed, phase=phase,
                                           kills=kills, policy_version=version, progress=bar.update)

    return asyncio.run(main())


# ------------------------------------------------------------------------------ o2o testbed run
def cmd_run(args) -> int:
    from o2o.logs.store import describe_db

    scenario, network, runtime = testbed_setup(args)
    check_scheduler(args.scheduler, args.model)
    kills = [KillPlan.parse(text, scenario, args.episodes) for text in args.kill_node]
    seeds = [args.seed + k for k in range(args.episodes)]
    _setup_logging(args.verbose)

    run = run_testbed_phase(args, scenario, network, runtime, seeds, args.phase, kills)
    bound = episode_bound_mean(scenario, network, seeds)
    summary, table = summary_table(args.scheduler, run.metrics(), bound, extended=not args.json)
    if args.json:
        print(json.dumps({args.scheduler: summary, "bound": bound}))
        return 0
    print(f"testbed: scenario {scenario.name}, {network.n} node processes, network seed "
          f"{args.network_seed}, episodes {seeds[0]}..{seeds[-1]}"
          + (f", model version {run.policy_version}" if run.policy_version else ""))
    print(table)
    for line in measurement_lines(run.results):
        print(line)
    print(f"task log: run {run.run_id} in {describe_db(args.db)}")
    return 0


# ------------------------------------------------------------------------------ o2o testbed compare
def simulator_rule(name: str, model: str | None, scenario: Scenario, network: Network):
    if name == "drl":
        from o2o.schedulers.drl import DRLRule

        return DRLRule.from_model(model, scenario, network)
    from o2o.sim import make_scheduler

    return make_scheduler(name)


def compare_logs(sim_logs, testbed_logs, slot_s: float) -> dict:
    """Per-episode success rates of both, and how the individual tasks differ."""
    from o2o.core.outcomes import OUTCOME_NAMES, SUCCESS

    episodes, changes, slack_ms = [], {}, []
    same_dest = same_outcome = tasks = 0
    flips_elsewhere = flips_after = 0
    for a, b in zip(sim_logs, testbed_logs):
        has = a.has_task
        # Where a differing outcome comes from: the task itself went elsewhere, or its node had
        # received a task decided differently (one more or one fewer) within the deadline horizon.
        other_dest = has & (a.dest != b.dest)
        horizon = int(np.ceil(np.nanmax(a.deadline_s[has], initial=0.0) / slot_s)) + 1
        for t, i in zip(*np.nonzero(has & (a.outcome != b.outcome))):
            if other_dest[t, i]:
                flips_elsewhere += 1
                continue
            j, lo = a.dest[t, i], max(0, t - horizon)
            near = other_dest[lo:t + 1] & ((a.dest[lo:t + 1] == j) | (b.dest[lo:t + 1] == j))
            flips_after += bool(near.any())
        sd = int((a.dest[has] == b.dest[has]).sum())
        so = int((a.outcome[has] == b.outcome[has]).sum())
        episodes.append({"seed": a.episode_seed, "tasks": a.tasks, "simulator": a.success_rate,
                         "testbed": b.success_rate, "difference": b.success_rate - a.success_rate,
                         "same_destination": sd / max(a.tasks, 1), "same_outcome": so / max(a.tasks, 1)})
        same_dest, same_outcome, tasks = same_dest + sd, same_outcome + so, tasks + a.tasks
        for x, y in zip(a.outcome[has].tolist(), b.outcome[has].tolist()):
            if x != y:
                key = f"{OUTCOME_NAMES[x]} -> {OUTCOME_NAMES[y]}"
                changes[key] = changes.get(key, 0) + 1
        # How close to their deadline the flipped successes were (in the run where they succeeded).
        arrive = np.arange(a.slots)[:, None] * slot_s
        for won, lost in ((a, b), (b, a)):
            flip = has & (won.outcome == SUCCESS) & (lost.outcome != SUCCESS)
            slack_ms.extend(((arrive + won.deadline_s - won.end_s)[flip] * 1e3).tolist())
    sim = np.asarray([e["simulator"] for e in episodes])
    real = np.asarray([e["testbed"] for e in episodes])
    return {"episodes": episodes, "simulator": float(sim.mean()), "testbed": float(real.mean()),
            "difference": float((real - sim).mean()),
            "same_destination": same_dest / max(tasks, 1), "same_outcome": same_outcome / max(tasks, 1),
            "outcome_changes": dict(sorted(changes.items(), key=lambda kv: -kv[1])),
            "changed_outcomes": {"total": sum(changes.values()), "other_destination": flips_elsewhere,
                                 "node_got_a_differently_decided_task": flips_after},
            "flipped_success_slack_ms": {"count": len(slack_ms),
                                         "median": float(np.median(slack_ms)) if slack_ms else None,
                                         "max": float(np.max(slack_ms)) if slack_ms else None}}


def cmd_compare(args) -> int:
    from o2o.core.episodes import sample_episodes
    from o2o.logs.records import episode_logs_from_rollout
    from o2o.logs.store import describe_db

    scenario, network, runtime = testbed_setup(args)
    check_scheduler(args.scheduler, args.model)
    seeds = [args.seed + k for k in range(args.episodes)]
    _setup_logging(args.verbose)
    rule = simulator_rule(args.scheduler, args.model, scenario, network)
    sim_logs = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, seeds), rule)

    run = run_testbed_phase(args, scenario, network, runtime, seeds, "compare", [])
    out = compare_logs(sim_logs, [r.log for r in run.results], scenario.slot_s)
    out.update({"scheduler": args.scheduler, "scenario": scenario.name, "nodes": network.n,
                "bound": episode_bound_mean(scenario, network, seeds), "run": run.run_id})
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"simulator vs testbed: {args.scheduler}, scenario {scenario.name}, {network.n} nodes, "
          f"network seed {args.network_seed}, the same episodes {seeds[0]}..{seeds[-1]}")
    header = f"{'episode seed':>12}{'tasks':>8}{'simulator':>12}{'testbed':>10}{'diff':>9}{'same dest':>11}{'same outcome':>14}"
    print(header)
    print("-" * len(header))
    for e in out["episodes"]:
        print(f"{e['seed']:>12}{e['tasks']:>8}{e['simulator']:>12.4f}{e['testbed']:>10.4f}"
              f"{e['difference']:>+9.4f}{e['same_destination']:>11.3f}{e['same_outcome']:>14.3f}")
    print("-" * len(header))
    print(f"{'mean':>12}{'':>8}{out['simulator']:>12.4f}{out['testbed']:>10.4f}{out['difference']:>+9.4f}"
          f"{out['same_destination']:>11.3f}{out['same_outcome']:>14.3f}")
    print(f"bound {out['bound']:.4f}")
    if out["outcome_changes"]:
        print("tasks whose outcome differs (simulator -> testbed): "
              + ", ".join(f"{k}: {v}" for k, v in out["outcome_changes"].items()))
        co = out["changed_outcomes"]
        print(f"of these {co['total']}: {co['other_destination']} went to another node (the rule saw "
              f"other probe answers), {co['node_got_a_differently_decided_task']} more went to a node "
              f"that had received a differently decided task shortly before")
        fs = out["flipped_success_slack_ms"]
        if fs["count"]:
            print(f"a success that the other side missed had finished {fs['median']:.1f} ms (median) "
                  "before its deadline")
    for line in measurement_lines(run.results):
        print(line)
    print(f"task log: run {run.run_id} in {describe_db(args.db)}")
    return 0


# ------------------------------------------------------------------------------ o2o bench testbed


def cmd_bench_testbed(args) -> int:
    scenario, network, runtime = testbed_setup(args)
    check_scheduler(args.scheduler, None)
    seeds = [args.seed + k for k in range(args.episodes)]
    _setup_logging(False)
    load_before = os.getloadavg()

    async def main() -> TestbedRun:
        async with LocalTestbed(scenario, network, runtime=runtime,
                                heartbeat_timeout_s=args.heartbeat_timeout, log_dir=args.log_dir) as tb:
            with progress_bar(total=len(seeds), desc="bench testbed", unit="episode", disable=args.json) as bar:
                return await run_phase(tb, None, scenario, network, args.scheduler, seeds,
                                       network_seed=args.network_seed, phase="bench", progress=bar.update)

    run = asyncio.run(main())
    load_after = os.getloadavg()
    results = run.results
    ratios = transfer_ratios(results)
    decision = lateness_summary(x for r in results for x in r.decision_latency_s)
    out = {
        "scenario": scenario.name, "nodes": network.n, "slot_s": scenario.slot_s,
        "episodes": len(results), "scheduler": args.scheduler, "cpus": os.cpu_count(),
        "load_average_before": list(load_before), "load_average_after": list(load_after),
        "slot_clock_lateness": lateness_summary(x for r in results for x in r.clock_lateness_s),
        "slot_delivery_lateness": lateness_summary(x for r in results for x in r.delivery_lateness_s),
        "decision_latency": decision,
        "transfer_ratio": ratio_summary(ratios),
        "sender_pacing_ratio": ratio_summary(transfer_ratios(results, "sent")),
        "success_rate": float(run.metrics()["success_rate"].mean()),
    }
    out["slot_clock_ok"] = out["slot_clock_lateness"]["p99_ms"] <= SLOT_CLOCK_P99_TARGET_MS
    out["transfer_ok"] = bool(ratios.size) and percentile(np.abs(ratios - 1), 99) <= TRANSFER_TOLERANCE
    if args.json:
        print(json.dumps(out))
        return 0
    c, d, t = out["slot_clock_lateness"], out["slot_delivery_lateness"], out["transfer_ratio"]
    print(f"testbed benchmark: {scenario.name}, {network.n} node processes + controller on "
          f"{out['cpus']} CPUs, {scenario.slot_s} s slots, {len(results)} episodes of {scenario.slots} "
          f"slots, {args.scheduler}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print(f"slot clock lateness     p50 {c['p50_ms']:6.2f} ms  p99 {c['p99_ms']:6.2f} ms  max "
          f"{c['max_ms']:6.2f} ms  ({c['count']} boundaries; target p99 <= "
          f"{SLOT_CLOCK_P99_TARGET_MS:.0f} ms: {'met' if out['slot_clock_ok'] else 'NOT met'})")
    print(f"slot message at nodes   p50 {d['p50_ms']:6.2f} ms  p99 {d['p99_ms']:6.2f} ms  max "
          f"{d['max_ms']:6.2f} ms  ({d['count']} messages)")
    print(f"decision (probes incl.) p50 {decision['p50_ms']:6.2f} ms  p99 {decision['p99_ms']:6.2f} ms "
          "after the slot boundary")
    if t["count"]:
        print(f"payload transfer time / (s/r_ij), end to end (sender start -> last byte at the receiver):\n"
              f"    min {t['min']:.3f}  median {t['median']:.3f}  p95 {t['p95']:.3f}  p99 {t['p99']:.3f}  "
              f"max {t['max']:.3f}  ({t['count']} transfers, {100 * t['within_10pct']:.1f}% within 10%; "
              f"target p99 within 10%: {'met' if out['transfer_ok'] else 'NOT met'})")
        q = out["sender_pacing_ratio"]
        print(f"    the sender's pacing alone (last chunk handed to the kernel): median {q['median']:.3f}  "
              f"p99 {q['p99']:.3f}  max {q['max']:.3f}")
    else:
        print("no payload transfers happened")
    print(f"success rate {out['success_rate']:.4f}")
    return 0


# ------------------------------------------------------------------------------ o2o testbed controller
def cmd_controller(args) -> int:
    """A controller for nodes started elsewhere (other hosts, Kubernetes pods)."""
    from o2o.logs.store import LogStore, describe_db
    from o2o.testbed.controller import Controller, ControllerSettings
    from o2o.testbed.launcher import AttachedNodes

    scenario, network, runtime = testbed_setup(args)
    check_scheduler(args.scheduler, args.model)
    host, port = wire.parse_host_port(args.listen, "--listen")
    key = wire.token_key(wire.read_token(args.token_file))
    seeds = [args.seed + k for k in range(args.episodes)]
    _setup_logging(True)

    async def main() -> TestbedRun:
        controller = Controller(scenario, network, ControllerSettings(
            key=key, host=host, port=port, runtime=runtime, heartbeat_timeout_s=args.heartbeat_timeout))
        await controller.start()
        try:
            await controller.wait_for_nodes(network.n, args.wait_nodes)
            with LogStore.open(args.db, create=True) as store:
                version = None
                if args.scheduler == "drl":
                    version, sha = latest_model(args.model, network.n)
                    await controller.announce_model(args.model, version, sha)
                return await run_phase(AttachedNodes(controller), store, scenario, network, args.scheduler,
                                       seeds, network_seed=args.network_seed, phase=args.phase,
                                       policy_version=version)
        finally:
            await controller.close("controller finished", shutdown_nodes=not args.keep_nodes)

    run = asyncio.run(main())
    bound = episode_bound_mean(scenario, network, seeds)
    summary, table = summary_table(args.scheduler, run.metrics(), bound, extended=not args.json)
    if args.json:
        print(json.dumps({args.scheduler: summary, "bound": bound}))
        return 0
    print(table)
    for line in measurement_lines(run.results):
        print(line)
    print(f"task log: run {run.run_id} in {describe_db(args.db)}")
    return 0


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
    from o2o.logs.store import LogStore, describe_db

    scenario, network, runtime = testbed_setup(args)
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
    from o2o.testbed.node import run_node

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
    from o2o.testbed.node import add_node_args

    tb = sub.add_parser("testbed", help="real edge-node processes over TCP (SPEC section 7)")
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
