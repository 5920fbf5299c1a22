"""The report of a comparison: per-method success rates with 95% intervals, the paired
differences to RATC, the cold-start check, the tables and the plots (paper Fig. 3 and a bar
chart).

Intervals. Every interval here is a two-sided 95% Student-t interval of a mean. Which mean is
said where it is reported: ``ci95`` is over the evaluation **episodes** (for a learned method,
each episode's success rate first averaged over the training seeds), so every method is
measured on the same episodes; ``ci95_seeds`` is over the training **seeds** (each seed's mean
over the episodes); the ``vs_ratc`` interval is over the episodes' paired differences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from o2o.core.metrics import format_probes, mean_ci95
from o2o.experiments.methods import HEURISTICS, LEARNED, METHODS, SeedResult


def summarize_methods(heuristic_rates: dict[str, np.ndarray], learned: list[SeedResult],
                      bound: float, bound_task: float | None = None,
                      probes: dict[str, Any] | None = None) -> dict[str, Any]:
    """``results.json`` content: per method the mean success rate and a 95% CI.

    Learned methods: the rate of each evaluation episode is averaged over the training seeds,
    and the CI (Student's t) is over the evaluation episodes, as for the heuristics, so every
    method is measured on the same episodes; ``per_seed`` and ``ci95_seeds`` (over the seed
    means) show the spread between training seeds. ``vs_ratc``: the paired difference per
    episode against RATC with its CI. A method given in neither argument (a sweep that asks
    for fewer) is left out; ``vs_ratc`` needs RATC. ``probes``: each method's probes per task
    (``probes_per_task``: a number, or ``full`` for central; a learned method's come with
    ``probes_note``, what its observation layout fetches)."""
    per_episode: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in heuristic_rates.items()}
    per_seed: dict[str, list[float]] = {}
    for method in LEARNED:
        if not learned or method not in learned[0].final:
            continue
        rows = np.array([r.final[method] for r in learned])  # (seeds, episodes)
        per_episode[method] = rows.mean(axis=0)
        per_seed[method] = rows.mean(axis=1).tolist()
    results: dict[str, Any] = {}
    for method in [m for m in METHODS if m in per_episode]:
        x = per_episode[method]
        mean, lo, hi = mean_ci95(x)
        entry: dict[str, Any] = {"success_rate": mean, "ci95": [lo, hi], "episodes": int(x.size)}
        if probes and method in probes:
            count = probes[method]
            if isinstance(count, tuple):    # a learned method: (count, what it fetches)
                entry.update(probes_per_task=count[0], probes_note=count[1])
            else:
                entry["probes_per_task"] = count
        if method in per_seed:
            _, slo, shi = mean_ci95(per_seed[method])
            entry.update(per_seed=per_seed[method], ci95_seeds=[slo, shi])
        if "ratc" in per_episode:
            d_mean, d_lo, d_hi = mean_ci95(x - per_episode["ratc"])
            entry["vs_ratc"] = {"diff": d_mean, "ci95": [d_lo, d_hi]}
        entry["per_episode"] = x.tolist()
        results[method] = entry
    # O2O-DRL against every other method, paired per episode (its logging heuristic included).
    if "o2o-drl" in per_episode:
        results["o2o-drl"]["paired"] = {
            method: dict(zip(("diff", "lo", "hi"), mean_ci95(per_episode["o2o-drl"] - per_episode[method])))
            for method in METHODS if method != "o2o-drl" and method in per_episode}
    results["bound"] = bound
    if bound_task is not None:
        results["bound-task"] = bound_task
    return results


def cold_start(learned: list[SeedResult]) -> dict[str, Any]:
    """First online evaluations (after the first update) against the offline-only level."""
    def first_after_update(curve):
        after = [p for p in curve if p["episodes"] > 0]
        return after[0] if after else None

    out = {"offline_only": [r.offline_curve[-1]["success_rate"] for r in learned if r.offline_curve],
           # Online-only before its first update: the random initialisation.
           "online_only_start": [r.online_only_curve[0]["success_rate"] for r in learned
                                 if r.online_only_curve and r.online_only_curve[0]["episodes"] == 0]}
    for name, attr in (("o2o_first_online", "o2o_curve"), ("online_only_first", "online_only_curve")):
        points = [first_after_update(getattr(r, attr)) for r in learned]
        out[name] = [p["success_rate"] for p in points if p is not None]
        out[name + "_episodes"] = points[0]["episodes"] if points and points[0] else None
    for key in ("offline_only", "o2o_first_online", "online_only_start", "online_only_first"):
        mean, lo, hi = mean_ci95(out[key]) if out[key] else (float("nan"),) * 3
        out[key + "_mean"], out[key + "_ci95"] = mean, [lo, hi]
    return out


def interval(ci, fmt: str = ".4f") -> str:
    """``[lo, hi]``, or ``n/a`` where no interval could be computed (a single value)."""
    lo, hi = ci
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    return f"[{lo:{fmt}}, {hi:{fmt}}]"


def probes_cell(entry: dict[str, Any]) -> str:
    """The probes-per-task cell of a method (with what a learned method's probes fetch)."""
    cell = format_probes(entry.get("probes_per_task"))
    return f"{cell} ({entry['probes_note']})" if cell and entry.get("probes_note") else cell


def format_results(results: dict[str, Any]) -> str:
    lines = ["| method | success rate | 95% CI | vs RATC (paired) | probes/task |", "|---|---|---|---|---|"]
    for method in METHODS:
        if method not in results:
            continue
        r = results[method]
        d = r["vs_ratc"]
        lines.append(f"| {method} | {r['success_rate']:.4f} | {interval(r['ci95'])} | "
                     f"{d['diff']:+.4f} {interval(d['ci95'], '+.4f')} | {probes_cell(r)} |")
    lines.append(f"| bound | {results['bound']:.4f} | | | |")
    if "bound-task" in results:
        lines.append(f"| bound-task | {results['bound-task']:.4f} | | | |")
    tuned = results.get("tuned") or {}
    if tuned:
        lines.append("")
        lines.append("probes/task: probe requests to other nodes per task (a node reads its own state "
                     "without one); full: reads every queue. Tuned rules (on validation episodes):")
        for name, t in tuned.items():
            values = ", ".join(f"{k}={v:g}" for k, v in t["params"].items())
            lines.append(f"- {name}: {values} (validation {t['validation_score']:.4f}; defaults "
                         f"{t['default_score']:.4f}; {t['source']})")
    return "\n".join(lines)


def plot_learning_curve(path: Path, learned: list[SeedResult], results: dict[str, Any]) -> None:
    """Paper Fig. 3: offline phase, then online success rate of O2O-DRL against online-only,
    with the heuristics as horizontal lines. Lines: mean over seeds; bands: min to max."""
    fig, (ax_off, ax_on) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True,
                                        gridspec_kw={"width_ratios": [1, 2]})

    def band(ax, curves, xkey, label, color):
        if not curves or not curves[0]:
            return
        xs = [p[xkey] for p in curves[0]]
        ys = np.array([[p["success_rate"] for p in c][:len(xs)] for c in curves])
        ax.plot(xs, ys.mean(axis=0), color=color, label=label, marker="o", ms=3)
        ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), color=color, alpha=0.2)

    band(ax_off, [r.offline_curve for r in learned], "step", "O2O-DRL (offline phase)", "tab:blue")
    band(ax_on, [r.o2o_curve for r in learned], "episodes", "O2O-DRL (online fine-tuning)", "tab:blue")
    band(ax_on, [r.online_only_curve for r in learned], "episodes", "online-only", "tab:red")
    styles = {"ratc": "tab:green", "rda": "tab:orange", "esf": "tab:purple", "spread": "tab:olive",
              "slack-reliable": "tab:pink", "random": "tab:gray",
              "local": "tab:brown", "central": "black"}
    for ax in (ax_off, ax_on):
        for name, color in styles.items():
            ax.axhline(results[name]["success_rate"], color=color, ls="--", lw=1,
                       label=name if ax is ax_on else None)
        ax.grid(alpha=0.3)
    ax_on.axhline(results["offline-only"]["success_rate"], color="tab:blue", ls=":", lw=1,
                  label="offline-only (final)")
    ax_off.set_xlabel("offline gradient steps")
    ax_on.set_xlabel("online episodes")
    ax_off.set_ylabel("task success rate")
    fig.legend(*ax_on.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=6,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Learning curve on the learning-curve episodes (mean over training seeds, band: min-max);\n"
                 "dashed lines: the heuristics on the held-out comparison episodes", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_comparison(path: Path, results: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(9, 4))
    means = [results[m]["success_rate"] for m in METHODS]
    err = np.array([[results[m]["success_rate"] - results[m]["ci95"][0],
                     results[m]["ci95"][1] - results[m]["success_rate"]] for m in METHODS]).T
    colors = ["tab:gray"] * len(HEURISTICS) + ["tab:cyan", "tab:red", "tab:blue"]
    ax.bar(METHODS, means, yerr=err, color=colors, capsize=3)
    ax.axhline(results["bound"], color="black", ls="--", lw=1, label="bound")
    if "bound-task" in results:
        ax.axhline(results["bound-task"], color="gray", ls="--", lw=1, label="bound-task")
    lo = min(means) - 0.05
    ax.set_ylim(max(0.0, lo), 1.0)
    ax.set_ylabel("task success rate (95% CI)")
    ax.legend()
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
