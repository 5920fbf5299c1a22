"""What the testbed's runs measured, and how they compare with the simulator.

* **sim vs testbed**: the same episodes (the same draws of ``o2o.core.episodes``) run by the
  simulator and on the testbed, compared task by task: success rates (eq. 9), where tasks went,
  their outcomes, and where a changed outcome comes from;
* **timing**: the lateness of the slot clock and of the slot messages at the nodes, decision
  latencies, and payload transfer times against the nominal T^t = s / r_ij (eq. 2);
* the lines and tables that ``o2o testbed run|compare|controller`` and ``o2o bench testbed`` print.
"""

from __future__ import annotations

import numpy as np

from o2o.core.network import Network
from o2o.core.outcomes import OUTCOME_NAMES, SUCCESS
from o2o.core.scenario import Scenario
from o2o.testbed.controller import EpisodeResult
from o2o.testbed.recorder import probe_requests
from o2o.testbed.timing import percentile

SLOT_CLOCK_P99_TARGET_MS = 10.0
TRANSFER_TOLERANCE = 0.10


# ------------------------------------------------------------------------------ timing
def lateness_summary(values) -> dict[str, float]:
    """Count, p50, p99, max and mean of latenesses in seconds, reported in ms."""
    values = list(values)
    return {"count": len(values), "p50_ms": percentile(values, 50) * 1e3,
            "p99_ms": percentile(values, 99) * 1e3,
            "max_ms": (max(values) * 1e3) if values else float("nan"),
            "mean_ms": float(np.mean(values)) * 1e3 if values else float("nan")}


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


def measurement_lines(results: list[EpisodeResult]) -> list[str]:
    """The slot clock, the transfer times, lost nodes and unsettled tasks of a phase, as lines."""
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


def bench_summary(results: list[EpisodeResult], success_rate: float) -> dict:
    """The figures of ``o2o bench testbed``: slot clock, slot delivery, decision latency,
    transfer and pacing ratios, and whether the targets are met."""
    ratios = transfer_ratios(results)
    out = {
        "slot_clock_lateness": lateness_summary(x for r in results for x in r.clock_lateness_s),
        "slot_delivery_lateness": lateness_summary(x for r in results for x in r.delivery_lateness_s),
        "decision_latency": lateness_summary(x for r in results for x in r.decision_latency_s),
        "transfer_ratio": ratio_summary(ratios),
        "sender_pacing_ratio": ratio_summary(transfer_ratios(results, "sent")),
        "success_rate": success_rate,
    }
    out["slot_clock_ok"] = out["slot_clock_lateness"]["p99_ms"] <= SLOT_CLOCK_P99_TARGET_MS
    out["transfer_ok"] = bool(ratios.size) and percentile(np.abs(ratios - 1), 99) <= TRANSFER_TOLERANCE
    return out


def bench_lines(out: dict, slots: int) -> list[str]:
    """``bench_summary`` (with the run's description) as the lines ``o2o bench testbed`` prints
    (``slots``: per episode)."""
    c, d, t = out["slot_clock_lateness"], out["slot_delivery_lateness"], out["transfer_ratio"]
    decision = out["decision_latency"]
    load_before, load_after = out["load_average_before"], out["load_average_after"]
    lines = [
        f"testbed benchmark: {out['scenario']}, {out['nodes']} node processes + controller on "
        f"{out['cpus']} CPUs, {out['slot_s']} s slots, {out['episodes']} episodes of {slots} "
        f"slots, {out['scheduler']}",
        f"hosts: {out['where']}" if out.get("where") else "hosts: every process on loopback, links paced "
        "by the sending nodes",
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)",
        f"slot clock lateness     p50 {c['p50_ms']:6.2f} ms  p99 {c['p99_ms']:6.2f} ms  max "
        f"{c['max_ms']:6.2f} ms  ({c['count']} boundaries; target p99 <= "
        f"{SLOT_CLOCK_P99_TARGET_MS:.0f} ms: {'met' if out['slot_clock_ok'] else 'NOT met'})",
        f"slot message at nodes   p50 {d['p50_ms']:6.2f} ms  p99 {d['p99_ms']:6.2f} ms  max "
        f"{d['max_ms']:6.2f} ms  ({d['count']} messages)",
        f"decision (probes incl.) p50 {decision['p50_ms']:6.2f} ms  p99 {decision['p99_ms']:6.2f} ms "
        "after the slot boundary",
    ]
    if t["count"]:
        q = out["sender_pacing_ratio"]
        lines += [
            f"payload transfer time / (s/r_ij), end to end (sender start -> last byte at the receiver):\n"
            f"    min {t['min']:.3f}  median {t['median']:.3f}  p95 {t['p95']:.3f}  p99 {t['p99']:.3f}  "
            f"max {t['max']:.3f}  ({t['count']} transfers, {100 * t['within_10pct']:.1f}% within 10%; "
            f"target p99 within 10%: {'met' if out['transfer_ok'] else 'NOT met'})",
            ("    the sender's view (start -> every byte acknowledged by TCP)" if out.get("pacing") == "kernel"
             else "    the sender's pacing alone (last chunk handed to the kernel)")
            + f": median {q['median']:.3f}  p99 {q['p99']:.3f}  max {q['max']:.3f}",
        ]
    else:
        lines.append("no payload transfers happened")
    lines.append(f"success rate {out['success_rate']:.4f}")
    return lines


def pacing_comparison_lines(kernel: dict, user: dict) -> list[str]:
    """Two ``bench_summary`` outputs of the same episodes side by side: links shaped by the
    kernel and paced by the sending nodes."""
    k, u = kernel["transfer_ratio"], user["transfer_ratio"]
    if not (k["count"] and u["count"]):
        return ["no payload transfers to compare"]
    rows = [("median", "median"), ("p95", "p95"), ("p99", "p99"), ("max", "max")]
    lines = ["payload transfer time / (s/r_ij), end to end, the same episodes:",
             f"    {'':<10}{'kernel (htb)':>14}{'user space':>14}"]
    lines += [f"    {label:<10}{k[key]:>14.3f}{u[key]:>14.3f}" for label, key in rows]
    lines.append(f"    {'within 10%':<10}{100 * k['within_10pct']:>13.1f}%{100 * u['within_10pct']:>13.1f}%")
    lines.append(f"    {'transfers':<10}{k['count']:>14d}{u['count']:>14d}")
    kc, uc = kernel["slot_clock_lateness"], user["slot_clock_lateness"]
    lines.append(f"slot clock lateness p99: {kc['p99_ms']:.2f} ms (kernel run), {uc['p99_ms']:.2f} ms (user run)")
    return lines


# ------------------------------------------------------------------------------ sim vs testbed
def episode_bounds_mean(scenario: Scenario, network: Network, seeds: list[int]) -> dict:
    """The simulator's two upper bounds on the expected success rate over ``seeds``, means over
    the episodes: ``bound`` (the contention-aware LP) and ``bound-task`` (per task)."""
    from o2o.sim import mean_bounds

    return mean_bounds(scenario, network, seeds)


def simulator_logs(scheduler: str, model: str | None, scenario: Scenario, network: Network,
                   seeds: list[int], params: dict[str, float] | None = None) -> list:
    """The simulator's logs of ``seeds`` with ``scheduler`` (``drl``: the model in store ``model``;
    a tunable rule at ``params``, None: its defaults)."""
    from o2o.core.episodes import sample_episodes
    from o2o.logs.records import episode_logs_from_rollout

    if scheduler == "drl":
        from o2o.schedulers.drl import DRLRule

        rule = DRLRule.from_model(model, scenario, network)
    else:
        from o2o.sim import make_scheduler

        rule = make_scheduler(scheduler, params)
    return episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, seeds), rule)


def logged_probes_per_task(logs) -> float:
    """Probe requests per task of a testbed run, from its task logs: a node logs the backlog of
    exactly the peers it sent a probe request to (``peer_backlog_s``; NaN for the others, and
    its own needs no request). The simulator counts the same in ``o2o simulate``
    (``probes_per_task``); a simulated log knows every backlog, so this reads testbed logs."""
    requests = tasks = 0
    for log in logs:
        requests += probe_requests(log.has_task, log.peer_backlog_s)
        tasks += log.tasks
    return requests / tasks if tasks else 0.0


def compare_logs(sim_logs, testbed_logs, slot_s: float) -> dict:
    """Per-episode success rates of both, and how the individual tasks differ."""
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
            "testbed_probes_per_task": logged_probes_per_task(testbed_logs),
            "difference": float((real - sim).mean()),
            "same_destination": same_dest / max(tasks, 1), "same_outcome": same_outcome / max(tasks, 1),
            "outcome_changes": dict(sorted(changes.items(), key=lambda kv: -kv[1])),
            "changed_outcomes": {"total": sum(changes.values()), "other_destination": flips_elsewhere,
                                 "node_got_a_differently_decided_task": flips_after},
            "flipped_success_slack_ms": {"count": len(slack_ms),
                                         "median": float(np.median(slack_ms)) if slack_ms else None,
                                         "max": float(np.max(slack_ms)) if slack_ms else None}}


def comparison_lines(out: dict) -> list[str]:
    """``compare_logs`` (with the bound) as the table and notes ``o2o testbed compare`` prints."""
    header = (f"{'episode seed':>12}{'tasks':>8}{'simulator':>12}{'testbed':>10}{'diff':>9}"
              f"{'same dest':>11}{'same outcome':>14}")
    lines = [header, "-" * len(header)]
    for e in out["episodes"]:
        lines.append(f"{e['seed']:>12}{e['tasks']:>8}{e['simulator']:>12.4f}{e['testbed']:>10.4f}"
                     f"{e['difference']:>+9.4f}{e['same_destination']:>11.3f}{e['same_outcome']:>14.3f}")
    lines.append("-" * len(header))
    lines.append(f"{'mean':>12}{'':>8}{out['simulator']:>12.4f}{out['testbed']:>10.4f}{out['difference']:>+9.4f}"
                 f"{out['same_destination']:>11.3f}{out['same_outcome']:>14.3f}")
    lines.append(f"bound {out['bound']:.4f}")
    if "testbed_probes_per_task" in out:
        lines.append(f"probe requests per task on the testbed {out['testbed_probes_per_task']:.2f}")
    if out["outcome_changes"]:
        lines.append("tasks whose outcome differs (simulator -> testbed): "
                     + ", ".join(f"{k}: {v}" for k, v in out["outcome_changes"].items()))
        co = out["changed_outcomes"]
        lines.append(f"of these {co['total']}: {co['other_destination']} went to another node (the rule saw "
                     f"other probe answers), {co['node_got_a_differently_decided_task']} more went to a node "
                     f"that had received a differently decided task shortly before")
        fs = out["flipped_success_slack_ms"]
        if fs["count"]:
            lines.append(f"a success that the other side missed had finished {fs['median']:.1f} ms (median) "
                         "before its deadline")
    return lines
