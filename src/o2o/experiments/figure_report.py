"""The report of a sweep, drawn from its results database alone: ``NAME.json``, ``NAME.md``
(the tables) and ``NAME.png`` (the paper's form: success rate against the swept value, one line
per method with its interval band, central and the bound drawn; grouped bars for Fig. 4).

Every point is summarized by ``summarize_methods``, the main job's comparison, so the
intervals mean the same everywhere: ``ci95`` is a 95% Student-t interval over the held-out
**episodes** (a learned method's rate of each episode first averaged over the training seeds),
``ci95_seeds`` over the training **seeds** (each seed's mean over the episodes), and a paired
difference is over the episodes' differences.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from o2o.core.metrics import json_safe, mean_ci95  # noqa: E402
from o2o.experiments.methods import CENTRAL_METHODS, LEARNED, SeedResult  # noqa: E402
from o2o.experiments.report import interval, probes_cell, summarize_methods  # noqa: E402
from o2o.experiments.results_db import NO_SEED, Cell  # noqa: E402
from o2o.experiments.sweeps import BOUND, BOUND_TASK, Sweep, x_value  # noqa: E402

COLORS = {"random": "tab:gray", "local": "tab:brown", "rda": "tab:orange", "ratc": "tab:green",
          "esf": "tab:purple", "spread": "tab:olive", "slack-reliable": "tab:pink", "offline-only": "tab:cyan",
          "online-only": "tab:red", "o2o-drl": "tab:blue", "central": "black", BOUND: "black"}
EXTRA_COLORS = ["gold", "teal", "navy", "maroon", "lime"]


def _curve_key(method: str) -> str:
    return {"offline-only": "offline_curve", "o2o-drl": "o2o_curve",
            "online-only": "online_only_curve"}[method]


def summarize_sweep(sweep: Sweep, cells: list[Cell]) -> dict[str, Any]:
    """``NAME.json``'s content: per point, the comparison of every method whose cells are
    finished, and what the paper's claims need (the best other method, paired differences)."""
    by_key = {c.key: c for c in cells}
    seeds = range(sweep.seeds)
    learned_methods = sweep.learned
    points = []
    finished = missing = 0
    for p in sweep.points:
        h = p.scenario_key
        rates = {m: np.asarray(by_key[(h, m, NO_SEED)].rates) for m in sweep.heuristics
                 if (h, m, NO_SEED) in by_key}
        learned: list[SeedResult] = []
        for k in seeds:
            got = {m: by_key.get((p.index, m, k)) for m in learned_methods}
            if learned_methods and all(got.values()):
                curves = {_curve_key(m): got[m].info.get("curve", []) for m in learned_methods}
                learned.append(SeedResult(k, curves.get("offline_curve", []),
                                          curves.get("o2o_curve", []),
                                          curves.get("online_only_curve", []),
                                          {m: got[m].rates for m in learned_methods}))
        bound_cell = by_key.get((h, BOUND, NO_SEED))
        bound = float(np.mean(bound_cell.rates)) if bound_cell else float("nan")
        expected = len(sweep.heuristics) + (BOUND in sweep.methods) + len(learned_methods) * sweep.seeds
        have = len(rates) + (bound_cell is not None) + len(learned) * len(learned_methods)
        finished, missing = finished + have, missing + expected - have
        infos = {m: by_key[(h, m, NO_SEED)].info for m in rates}
        for m in learned_methods:
            if learned:
                infos[m] = by_key[(p.index, m, 0)].info
        probes = {m: (i["probes_per_task"], i["probes_note"]) if "probes_note" in i else i["probes_per_task"]
                  for m, i in infos.items() if "probes_per_task" in i}
        summary = summarize_methods(rates, learned, bound, probes=probes) if (rates or learned) else {"bound": bound}
        if bound_cell is None:
            summary.pop("bound", None)
        task_cell = by_key.get((h, BOUND_TASK, NO_SEED))
        if task_cell is not None:
            summary[BOUND_TASK] = float(np.mean(task_cell.rates))
        per_episode = {m: np.asarray(v) for m, v in rates.items()}
        for m in learned_methods:
            if learned:
                per_episode[m] = np.mean([r.final[m] for r in learned], axis=0)
        point = {"index": p.index, "value": p.value, "label": p.label, "x": x_value(p.value),
                 "logging": p.logging, "seeds": len(learned), "methods": summary,
                 "tuned": {m: infos[m]["tuned"] for m in rates if "tuned" in infos[m]},
                 "claims": _claims(per_episode, p.logging)}
        first = by_key.get((p.index, learned_methods[0], 0)) if learned_methods else None
        if first is not None:
            point["logs"] = first.info.get("logs")     # the logged heuristic's own rate
        points.append(point)
    units = {(c.point, c.seed, c.info.get("unit", c.method)): c for c in cells}
    compute_s = float(sum(c.seconds for c in units.values()))
    cpu_s = float(sum(c.info.get("cpu_s", 0.0) for c in units.values()))
    return {"name": sweep.name, "title": sweep.spec.title, "where": sweep.spec.where,
            "plan": sweep.plan_name, "seeds": sweep.seeds, "eval_episodes": sweep.plan.eval_episodes,
            "network_seed": sweep.spec.network_seed, "field": sweep.spec.sweep.field,
            "label": sweep.spec.sweep.label or sweep.spec.sweep.field,
            "methods": list(sweep.methods), "cells_finished": finished, "cells_missing": missing,
            "compute_s": compute_s, "cpu_s": cpu_s, "points": points,
            "intervals": "ci95: 95% Student-t interval over the held-out episodes (learned methods: "
                         "each episode's rate averaged over the training seeds first); ci95_seeds: "
                         "over the training seeds' means; paired differences: over the episodes"}


def _claims(per_episode: dict[str, np.ndarray], logging: str) -> dict[str, Any]:
    """Which method is best here, and O2O-DRL against the best other decentralized method
    and against RATC (paired over the episodes)."""
    out: dict[str, Any] = {}
    decentralized = {m: v for m, v in per_episode.items() if m not in (*CENTRAL_METHODS, BOUND, BOUND_TASK)}
    if not decentralized:
        return out
    means = {m: float(v.mean()) for m, v in decentralized.items()}
    out["best"] = max(means, key=means.get)
    if "o2o-drl" in decentralized:
        others = {m: v for m, v in means.items() if m != "o2o-drl"}
        if others:
            best_other = max(others, key=others.get)
            d, lo, hi = mean_ci95(decentralized["o2o-drl"] - decentralized[best_other])
            out["o2o_vs_best_other"] = {"method": best_other, "diff": d, "ci95": [lo, hi]}
        if logging in decentralized:
            d, lo, hi = mean_ci95(decentralized["o2o-drl"] - decentralized[logging])
            out["o2o_vs_logging_heuristic"] = {"method": logging, "diff": d, "ci95": [lo, hi]}
    return out


def format_tables(sweep: Sweep, report: dict[str, Any]) -> str:
    points = report["points"]
    where = ("on the testbed (real node processes; central is the simulator's, on the same "
             "episodes)" if sweep.testbed else "in the simulator")
    lines = [f"# {report['name']}: {report['title']}", "",
             f"Plan `{report['plan']}`: {report['eval_episodes']} held-out episodes at every point, "
             f"{report['seeds']} training seed(s), network seed {report['network_seed']}, {where}. "
             f"Cells finished: {report['cells_finished']}"
             + (f" ({report['cells_missing']} missing)" if report["cells_missing"] else "")
             + f"; time in the units {report['compute_s'] / 60:.1f} min"
             + (f" ({report['cpu_s'] / 60:.1f} CPU min in the units' own processes)"
                if report["cpu_s"] else "") + ".", "",
             "Intervals: 95% Student-t over the held-out **episodes** (a learned method's rate of "
             "each episode first averaged over its training seeds); the second table gives the "
             "learned methods' interval over the training **seeds**.", ""]
    head = [report["label"]] + [p["label"] if report["field"] != "logging" else f"logs of {p['label']}"
                                for p in points]
    lines += ["| method | " + " | ".join(head[1:]) + " |", "|---" * len(head) + "|"]
    for m in sweep.methods:
        row = []
        for p in points:
            r = p["methods"].get(m)
            if m == BOUND:
                row.append(" / ".join(f"{p['methods'][b]:.4f}" if isinstance(p["methods"].get(b), float)
                                      and np.isfinite(p["methods"][b]) else "—" for b in (BOUND, BOUND_TASK)))
            elif r is None:
                row.append("—")
            else:
                row.append(f"{r['success_rate']:.4f} {interval(r['ci95'])}")
        name = f"{m} (simulator)" if sweep.testbed and m in CENTRAL_METHODS else m
        name = "bound / bound-task" if m == BOUND else name
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += ["", "Probes per task (probe requests to other nodes; a node reads its own state without "
              "one; full: reads every queue; learned methods: what their observation fetches):", "",
              "| method | " + " | ".join(head[1:]) + " |", "|---" * len(head) + "|"]
    for m in sweep.methods:
        if m == BOUND:
            continue
        cells = [probes_cell(p["methods"][m]) if m in p["methods"] else "—" for p in points]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    tuned = sorted({m for p in points for m in p.get("tuned", {})})
    if tuned:
        lines += ["", "Tuned values of each point (on validation episodes of its scenario and network):", "",
                  "| rule | " + " | ".join(head[1:]) + " |", "|---" * len(head) + "|"]
        for m in tuned:
            cells = [", ".join(f"{k}={v:g}" for k, v in p["tuned"][m]["params"].items())
                     if m in p.get("tuned", {}) else "—" for p in points]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    learned = [m for m in sweep.learned]
    if learned:
        lines += ["", "Learned methods over the training seeds (mean of the seeds' means, 95% interval "
                  "over the seeds; n/a with one seed):", "",
                  "| method | " + " | ".join(head[1:]) + " |", "|---" * len(head) + "|"]
        for m in learned:
            row = []
            for p in points:
                r = p["methods"].get(m)
                row.append("—" if r is None else
                           f"{np.mean(r['per_seed']):.4f} {interval(r['ci95_seeds'])}")
            lines.append(f"| {m} | " + " | ".join(row) + " |")
    lines += ["", "Best decentralized method (by mean) and O2O-DRL's paired difference to the best "
              "other one and to the heuristic whose logs it learned from:", "",
              "| | " + " | ".join(head[1:]) + " |", "|---" * len(head) + "|"]
    best, vs_best, vs_log = [], [], []
    for p in points:
        c = p["claims"]
        best.append(c.get("best", "—"))
        d = c.get("o2o_vs_best_other")
        vs_best.append("—" if d is None else f"{d['diff']:+.4f} {interval(d['ci95'], '+.4f')} vs {d['method']}")
        d = c.get("o2o_vs_logging_heuristic")
        vs_log.append("—" if d is None else f"{d['diff']:+.4f} {interval(d['ci95'], '+.4f')} vs {d['method']}")
    lines += ["| best | " + " | ".join(best) + " |",
              "| O2O-DRL − best other | " + " | ".join(vs_best) + " |",
              "| O2O-DRL − logging heuristic | " + " | ".join(vs_log) + " |"]
    return "\n".join(lines) + "\n"


def _color(method: str, k: int) -> str:
    return COLORS.get(method, EXTRA_COLORS[k % len(EXTRA_COLORS)])


def plot_lines(path: Path, sweep: Sweep, report: dict[str, Any]) -> None:
    points = report["points"]
    xs = [p["x"] if p["x"] is not None else p["index"] for p in points]
    fig, ax = plt.subplots(figsize=(8.5, 5))
    for k, m in enumerate(sweep.methods):
        if m == BOUND:
            ys = [p["methods"].get("bound", np.nan) for p in points]
            ax.plot(xs, ys, color="black", ls="--", lw=1.2, label="bound")
            ys = [p["methods"].get(BOUND_TASK, np.nan) for p in points]
            ax.plot(xs, ys, color="gray", ls="--", lw=1.0, label=BOUND_TASK)
            continue
        got = [(x, p["methods"][m]) for x, p in zip(xs, points) if m in p["methods"]]
        if not got:
            continue
        x = [g[0] for g in got]
        y = np.array([g[1]["success_rate"] for g in got])
        lo = np.array([g[1]["ci95"][0] if g[1]["ci95"][0] is not None else np.nan for g in got], dtype=float)
        hi = np.array([g[1]["ci95"][1] if g[1]["ci95"][1] is not None else np.nan for g in got], dtype=float)
        learned = m in LEARNED
        label = f"{m} (simulator)" if sweep.testbed and m in CENTRAL_METHODS else m
        style = {"ls": ":", "lw": 1.5} if m in CENTRAL_METHODS else {"lw": 2.2 if learned else 1.3}
        ax.plot(x, y, color=_color(m, k), marker="o" if learned else ".", label=label, **style)
        ax.fill_between(x, lo, hi, color=_color(m, k), alpha=0.15 if learned else 0.08, lw=0)
    ax.set_xticks(xs, [p["label"] for p in points], rotation=20 if len(points[0]["label"]) > 6 else 0)
    ax.set_xlabel(report["label"])
    ax.set_ylim(top=1.01)
    ax.set_ylabel("task success rate (band: 95% CI over episodes)")
    ax.grid(alpha=0.3)
    ax.set_title(report["title"] or report["name"], fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bars(path: Path, sweep: Sweep, report: dict[str, Any]) -> None:
    """Fig. 4: per logging heuristic, the heuristic itself beside offline-only and O2O-DRL
    trained on its logs; online-only (which uses no logs), central and the bound as lines."""
    points = report["points"]
    bars = ["heuristic", *[m for m in ("offline-only", "o2o-drl") if m in sweep.methods]]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    all_lo = []
    for b, what in enumerate(bars):
        ys, errs = [], []
        for p in points:
            m = p["logging"] if what == "heuristic" else what
            r = p["methods"].get(m)
            y = r["success_rate"] if r else np.nan
            lo, hi = (r["ci95"] if r else (None, None))
            ys.append(y)
            errs.append([y - lo if lo is not None else 0.0, hi - y if hi is not None else 0.0])
            all_lo.append(y)
        color = "tab:gray" if what == "heuristic" else COLORS[what]
        ax.bar(np.arange(len(points)) + (b - (len(bars) - 1) / 2) * width, ys, width,
               yerr=np.array(errs).T, capsize=3, color=color,
               label="the logging heuristic itself" if what == "heuristic" else f"{what} (its logs)")
    for m, style in (("online-only", {"color": COLORS["online-only"], "ls": "-."}),
                     ("central", {"color": "black", "ls": ":"})):
        vals = [p["methods"][m]["success_rate"] for p in points if m in p["methods"]]
        if vals:
            ax.axhline(float(np.mean(vals)), lw=1.2, label=f"{m} (no logs)" if m == "online-only" else m,
                       **style)
    bounds = [p["methods"]["bound"] for p in points if isinstance(p["methods"].get("bound"), float)]
    if bounds:
        ax.axhline(float(np.mean(bounds)), color="black", ls="--", lw=1.2, label="bound")
    finite = [v for v in all_lo if np.isfinite(v)]
    ax.set_ylim(max(0.0, (min(finite) if finite else 0.0) - 0.1), 1.0)
    ax.set_xticks(range(len(points)), [p["label"] for p in points])
    ax.set_xlabel("heuristic whose task logs train the learned methods")
    ax.set_ylabel("task success rate (95% CI over episodes)")
    ax.set_title(report["title"] or report["name"], fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(sweep: Sweep, cells: list[Cell], out: Path) -> dict[str, Any]:
    """``NAME.json``, ``NAME.md`` and ``NAME.png`` in ``out`` from the cells alone."""
    out.mkdir(parents=True, exist_ok=True)
    report = json_safe(summarize_sweep(sweep, cells))
    (out / f"{sweep.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{sweep.name}.md").write_text(format_tables(sweep, report))
    if any(p["methods"] for p in report["points"]):
        (plot_bars if sweep.spec.plot == "bars" else plot_lines)(out / f"{sweep.name}.png", sweep, report)
    return report
