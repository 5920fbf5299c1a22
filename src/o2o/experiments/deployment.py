"""The cold start in numbers: what the users of a network get while a learner trains online on
it (paper V-C: offline-to-online learning is there to avoid the cold start of online RL), episode
by episode, against the logging heuristic run on the same episodes.

Online episode e = 1..E is collected by the policy of that moment (Algorithm 2, line 2) on the
episode seeds ``o2o.core.seeds.online(k)`` of training seed k; s_e of its n_e tasks succeed.
A reference (the logging heuristic, or any other scheduler) runs on the same seeds and the same
network, so it gets the same tasks (n_e equal; checked) and succeeds on r_e of them.

* **moving success rate** m_e = sum of s over the window (e-W, e] / sum of n over it, for
  e = W..E: the share of the last W episodes' tasks that succeeded. W is one batch D_k
  (``episodes_per_batch``, 8 by default), which is short enough to follow the learner and
  long enough to average out one episode's luck.
* **start** = m_W, the first W episodes. With W <= the batch size they are all collected
  before the first update: for O2O-DRL by the offline actor itself (offline-only on the online
  episodes), for online-only by its random initialisation.
* **lowest** = min over e of m_e (at the first episode that reaches it); **dip** = lowest -
  start (<= 0; 0 when the learner never falls below where it started).
* **regret** against a reference = sum over e of (r_e - s_e), in tasks: positive counts the
  tasks lost by learning online instead of running the reference, negative the tasks gained;
  its running sum over e is the cumulative regret, and the peak of that sum (at least 0) the
  most tasks the learner has been behind the reference at any time.
* **above from**: the first episode e >= W such that at e and at every later episode the
  learner's window holds more successes than the reference's window (strictly; the same tasks,
  so the same as m_e above the reference's): from there on it stays above. W when it is above
  from the first window on; None ("never") when its last window is not above.

``deployment_numbers`` computes these for one learner against any references' per-episode
successes; ``summarize_deployment`` for every learner and training seed of a run, with the
means over seeds (``results.json`` -> ``deployment``); ``deployment_section`` and
``plot_deployment`` draw them. A fine-tuning command reports the same by handing its own
per-episode counts to ``summarize_deployment``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

# The learners a run records online episodes of, in the order reported, with their names in print.
LABELS = {"o2o-drl": "O2O-DRL", "online-only": "online-only"}


def _counts(x: Sequence[int], name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name}: a non-empty list of per-episode task counts (integers) is needed")
    return a.astype(np.int64)


def _check_window(episodes: int, window: int) -> None:
    if not 1 <= window <= episodes:
        raise ValueError(f"window {window} must lie in 1..{episodes} (the online episodes)")


def window_sums(counts: Sequence[int], window: int) -> np.ndarray:
    """Sums over the last ``window`` episodes, at episodes ``window``..E (integers)."""
    c = _counts(counts, "counts")
    _check_window(c.size, window)
    running = np.concatenate([[0], np.cumsum(c)])
    return running[window:] - running[:-window]


def moving_rate(success: Sequence[int], tasks: Sequence[int], window: int) -> np.ndarray:
    """m_e for e = window..E: successes over tasks of the last ``window`` episodes."""
    s, n = window_sums(success, window), window_sums(tasks, window)
    return s / np.maximum(n, 1)


def dip(success: Sequence[int], tasks: Sequence[int], window: int) -> dict[str, Any]:
    """Start (m_W), lowest point (min m_e, at its first episode e) and dip = lowest - start."""
    m = moving_rate(success, tasks, window)
    low = int(np.argmin(m))
    return {"start": float(m[0]), "lowest": float(m[low]), "lowest_episode": low + window,
            "dip": float(m[low] - m[0])}


def cumulative_regret(success: Sequence[int], reference: Sequence[int]) -> np.ndarray:
    """Running sum over the episodes of (reference's successes - learner's), in tasks."""
    s, r = _counts(success, "success"), _counts(reference, "reference")
    if s.size != r.size:
        raise ValueError(f"{s.size} learner episodes against {r.size} reference episodes")
    return np.cumsum(r - s)


def regret(success: Sequence[int], reference: Sequence[int]) -> int:
    """Tasks lost (positive) or gained (negative) against the reference over the episodes."""
    return int(cumulative_regret(success, reference)[-1])


def regret_peak(success: Sequence[int], reference: Sequence[int]) -> int:
    """The most tasks the learner has been behind the reference at any episode (the peak of
    the cumulative regret; 0 when it was never behind)."""
    return max(0, int(cumulative_regret(success, reference).max()))


def above_from(success: Sequence[int], reference: Sequence[int], window: int) -> int | None:
    """The first episode e >= window from which every window ending at e or later holds more
    learner successes than reference successes; None when the last window does not."""
    cumulative_regret(success, reference)  # same lengths
    above = window_sums(success, window) > window_sums(reference, window)
    if not above[-1]:
        return None
    below = np.flatnonzero(~above)
    return int(below[-1] + 1 + window) if below.size else window


def trajectory(success: Sequence[int], tasks: Sequence[int], window: int) -> dict[str, Any]:
    """The success rate over all the episodes, the start, lowest point and dip, and the last
    window's rate (``final``) of one scheduler's run of episodes."""
    s, n = _counts(success, "success"), _counts(tasks, "tasks")
    if s.size != n.size or np.any(s > n) or np.any(s < 0):
        raise ValueError("success and tasks must be per-episode counts with 0 <= success <= tasks")
    return {"success_rate": float(s.sum() / max(n.sum(), 1)), **dip(s, n, window),
            "final": float(moving_rate(s, n, window)[-1])}


def deployment_numbers(success: Sequence[int], tasks: Sequence[int],
                       references: Mapping[str, Sequence[int]], window: int) -> dict[str, Any]:
    """Every number of one learner's online phase, against each reference's per-episode
    successes on the same episodes (the logging heuristic; any other scheduler alike)."""
    s = _counts(success, "success")
    out: dict[str, Any] = trajectory(s, tasks, window)
    out["regret_tasks"] = {name: regret(s, r) for name, r in references.items()}
    out["regret_peak_tasks"] = {name: regret_peak(s, r) for name, r in references.items()}
    out["above_from_episode"] = {name: above_from(s, r, window) for name, r in references.items()}
    return out


def reference_episodes(scenario: Scenario, network: Network, scheduler: str,
                       episode_seeds: Sequence[int]) -> dict[str, list[int]]:
    """Tasks and successes per episode of a scheduler (by name) on the given episode seeds."""
    metrics = simulate(scenario, network, list(episode_seeds), make_scheduler(scheduler))
    return {"tasks": metrics["tasks"].astype(int).tolist(),
            "success": metrics["success"].astype(int).tolist()}


def seed_record(seed: int, learners: Mapping[str, Mapping[str, list[int]]],
                references: Mapping[str, Mapping[str, list[int]]]) -> dict[str, Any]:
    """The raw per-episode counts of one training seed, as ``results.json`` keeps them: each
    learner's and reference's ``{"seeds", "tasks", "success"}`` (references without seeds)
    must be on the same episodes, which is checked."""
    first = next(iter(learners.values()))
    for name, run in [*learners.items(), *references.items()]:
        if run.get("seeds", first["seeds"]) != first["seeds"] or run["tasks"] != first["tasks"]:
            raise ValueError(f"{name} did not run on the same online episodes as the others")
    return {"seed": seed, "episode_seeds": list(first["seeds"]), "tasks": list(first["tasks"]),
            "success": {name: list(run["success"]) for name, run in [*learners.items(), *references.items()]}}


def summarize_deployment(records: list[dict[str, Any]], learners: Sequence[str],
                         references: Sequence[str], window: int) -> dict[str, Any]:
    """``results.json`` -> ``deployment``: the raw records (``seed_record``) with each
    learner's numbers per training seed, and their means over the seeds. ``above_from_all``
    is the latest episode over the seeds (None when a seed never stays above). Each
    reference's own trajectory is there too: its dip, a policy that does not learn, is the
    size of a dip that chance alone makes."""
    per_seed = []
    shape = ("success_rate", "start", "lowest", "dip", "final")
    for rec in records:
        refs = {name: rec["success"][name] for name in references}
        row = {**rec, "references": {name: trajectory(r, rec["tasks"], window) for name, r in refs.items()}}
        for name in learners:
            row[name] = deployment_numbers(rec["success"][name], rec["tasks"], refs, window)
        per_seed.append(row)
    mean: dict[str, Any] = {}
    for name in learners:
        numbers = [row[name] for row in per_seed]
        m = {k: float(np.mean([x[k] for x in numbers])) for k in shape}
        m["regret_tasks"] = {r: float(np.mean([x["regret_tasks"][r] for x in numbers])) for r in references}
        m["regret_tasks_per_seed"] = {r: [x["regret_tasks"][r] for x in numbers] for r in references}
        m["regret_peak_tasks_per_seed"] = {r: [x["regret_peak_tasks"][r] for x in numbers] for r in references}
        m["above_from_episode_per_seed"] = {r: [x["above_from_episode"][r] for x in numbers]
                                            for r in references}
        m["above_from_all"] = {r: (None if None in m["above_from_episode_per_seed"][r]
                                   else max(m["above_from_episode_per_seed"][r])) for r in references}
        mean[name] = m
    mean["references"] = {r: {k: float(np.mean([row["references"][r][k] for row in per_seed])) for k in shape}
                          for r in references}
    return {"window_episodes": window, "episodes": len(records[0]["tasks"]) if records else 0,
            "tasks_per_seed": [int(np.sum(rec["tasks"])) for rec in records],
            "learners": list(learners), "references": list(references),
            "per_seed": per_seed, "mean": mean}


def resummarize(block: dict[str, Any]) -> dict[str, Any]:
    """The same block recomputed from the raw counts it keeps (``o2o report``)."""
    raw = [{k: row[k] for k in ("seed", "episode_seeds", "tasks", "success")} for row in block["per_seed"]]
    return summarize_deployment(raw, block["learners"], block["references"], block["window_episodes"])


def _episode(e: int | None) -> str:
    return "never" if e is None else str(e)


def _trajectory_cells(m: dict[str, Any], per_seed: list[dict[str, Any]]) -> list[str]:
    lows = " ".join(str(x["lowest_episode"]) for x in per_seed)
    return [f"{m['success_rate']:.4f}", f"{m['start']:.4f}", f"{m['lowest']:.4f} ({lows})",
            f"{m['dip']:+.4f}"]


def deployment_section(block: dict[str, Any]) -> str:
    """The results.md section: one row per learner and reference, means over the seeds."""
    w, refs = block["window_episodes"], block["references"]
    seeds = len(block["per_seed"])
    tasks = int(np.mean(block["tasks_per_seed"])) if block["tasks_per_seed"] else 0
    head = ["| method | success, all online episodes | start | lowest (at episode, per seed) | dip |"
            + "".join(f" regret vs {r}, tasks (per seed) | above {r} from episode (per seed) |"
                      for r in refs),
            "|---|---|---|---|---|" + "---|---|" * len(refs)]
    rows = []
    for name in block["learners"]:
        m = block["mean"][name]
        cells = _trajectory_cells(m, [row[name] for row in block["per_seed"]])
        for r in refs:
            per = " ".join(f"{x:+d}" for x in m["regret_tasks_per_seed"][r])
            firsts = " ".join(_episode(x) for x in m["above_from_episode_per_seed"][r])
            cells += [f"{m['regret_tasks'][r]:+.1f} ({per})", f"{_episode(m['above_from_all'][r])} ({firsts})"]
        rows.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    for r in refs:
        cells = _trajectory_cells(block["mean"]["references"][r],
                                  [row["references"][r] for row in block["per_seed"]])
        rows.append(f"| {r} (same episodes) | " + " | ".join(cells) + " |" + " |" * (2 * len(refs)))
    return (f"## The cold start: the online episodes as users got them\n\n"
            f"{block['episodes']} online episodes per training seed ({tasks} tasks), mean over "
            f"{seeds} training seeds; rates over a moving window of {w} episodes; start: the "
            f"first {w} episodes; dip: lowest - start; regret: tasks the learner lost (+) or "
            f"gained (-) against the reference on the same episodes; stays above: the first "
            f"episode from which every later window is above the reference (the latest over the "
            f"seeds). The reference does not learn: its own dip is what chance alone gives."
            f"\n\n" + "\n".join(head + rows) + "\n")


def plot_deployment(path: Path, block: dict[str, Any]) -> None:
    """Left: the moving success rate per online episode of each learner and reference (mean
    over seeds, band min-max). Right: the cumulative regret against each reference, in tasks."""
    w, records = block["window_episodes"], block["per_seed"]
    refs = block["references"]
    colors = {"o2o-drl": "tab:blue", "online-only": "tab:red", "generalist fine-tuned": "black"}
    ref_colors = ["tab:olive", "tab:purple", "tab:green"]
    fig, (ax_rate, ax_regret) = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(w, block["episodes"] + 1)
    xs = np.arange(1, block["episodes"] + 1)

    def band(ax, xv, ys, **style):
        ys = np.asarray(ys, dtype=float)
        ax.plot(xv, ys.mean(axis=0), **style)
        ax.fill_between(xv, ys.min(axis=0), ys.max(axis=0), color=style["color"], alpha=0.2)

    for name in [*block["learners"], *refs]:
        is_ref = name in refs
        style = {"color": ref_colors[refs.index(name) % 3] if is_ref else colors.get(name, "tab:gray"),
                 "ls": "--" if is_ref else "-", "label": LABELS.get(name, name)}
        band(ax_rate, x, [moving_rate(rec["success"][name], rec["tasks"], w) for rec in records], **style)
    for name in block["learners"]:
        for i, r in enumerate(refs):
            band(ax_regret, xs, [cumulative_regret(rec["success"][name], rec["success"][r]) for rec in records],
                 color=colors.get(name, "tab:gray"), ls=["-", ":", "-."][i % 3],
                 label=f"{LABELS.get(name, name)} vs {r}")
    ax_regret.axhline(0, color="black", lw=0.8)
    ax_rate.set_xlabel("online episode")
    ax_rate.set_ylabel(f"task success rate (last {w} episodes)")
    ax_regret.set_xlabel("online episode")
    ax_regret.set_ylabel("cumulative regret (tasks lost; < 0: gained)")
    for ax in (ax_rate, ax_regret):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Online phase as users got it: every training episode, collected by the policy of the moment\n"
                 "(mean over training seeds, band: min-max; the references on the same episodes)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def online_episodes(result) -> dict[str, list[int]]:
    """The per-episode record of an ``o2o.learn.online.OnlineResult``."""
    return {"seeds": list(result.episode_seeds), "tasks": list(result.episode_tasks),
            "success": list(result.episode_success)}


def deployment_report(scenario: Scenario, network: Network, learned: Sequence[Any], reference: str,
                      window: int) -> dict[str, Any]:
    """The ``deployment`` block of a run: ``reference`` (the logging heuristic) run on each
    training seed's online episodes, against every learner that recorded them
    (``SeedResult.online_episodes``)."""
    records = []
    learners: list[str] = []
    for result in learned:
        runs = result.online_episodes
        learners = [name for name in LABELS if name in runs]
        ref = reference_episodes(scenario, network, reference, runs[learners[0]]["seeds"])
        records.append(seed_record(result.seed, {name: runs[name] for name in learners}, {reference: ref}))
    return summarize_deployment(records, learners, [reference], window)
