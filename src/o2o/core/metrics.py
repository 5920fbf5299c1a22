"""Episode metrics (paper eq. 9 and the figures of section V), defined once.

The simulator's engine (a batch of episodes), the testbed's recorder (one episode) and the task
log (aggregate counts) all report the same numbers through these functions. Arrays are
``(B, T, N)`` indexed [episode, slot t, source node i]; times are seconds since the episode's
start, NaN where a stage did not happen.
"""

from __future__ import annotations

import math

import numpy as np

from o2o.core.outcomes import DROP, EXEC_FAIL, SUCCESS, TRANS_FAIL

COUNT_FIELDS = ("tasks", "success", "drop", "exec_fail", "trans_fail")


def success_rate(success, tasks):
    """success / tasks (paper eq. 9); 0 for an episode without tasks."""
    return np.asarray(success) / np.maximum(np.asarray(tasks), 1)


def episode_metrics(has_task: np.ndarray, outcome: np.ndarray, dest: np.ndarray, end_s: np.ndarray,
                    exec_start_s: np.ndarray, slot_s: float, tx_start_s: np.ndarray | None = None,
                    tx_end_s: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-episode counts (B,), success rate, mean completion time of the successful tasks,
    utilisation of every CPU (B, N) and, when the transmissions are given, of every link
    (B, N, N): busy time over the episode's span (its slots, or longer if the drain runs on).

    ``exec_start_s``: when the task started executing (NaN: never); ``tx_start_s`` and
    ``tx_end_s``: when its transmission started and ended (NaN: local or never sent)."""
    b_count, t_count, n = has_task.shape
    count = lambda code: (outcome == code).sum(axis=(1, 2))  # noqa: E731
    tasks = has_task.sum(axis=(1, 2))
    success = count(SUCCESS)
    arrive_s = np.arange(t_count)[None, :, None] * slot_s
    completion = np.where(outcome == SUCCESS, end_s - arrive_s, 0.0)
    ended = np.where(has_task & ~np.isnan(end_s), end_s, 0.0)
    span = np.maximum(ended.max(axis=(1, 2), initial=0.0), t_count * slot_s)
    ran = has_task & ~np.isnan(exec_start_s)
    node_busy = np.zeros((b_count, n))
    b, t, i = np.nonzero(ran)
    np.add.at(node_busy, (b, dest[b, t, i]), end_s[b, t, i] - exec_start_s[b, t, i])
    out = {
        "tasks": tasks, "success": success, "drop": count(DROP), "exec_fail": count(EXEC_FAIL),
        "trans_fail": count(TRANS_FAIL), "success_rate": success_rate(success, tasks),
        "mean_completion_s": completion.sum(axis=(1, 2)) / np.maximum(success, 1),
        "node_utilisation": node_busy / span[:, None],
    }
    if tx_start_s is not None and tx_end_s is not None:
        sent = has_task & ~np.isnan(tx_start_s)
        link_busy = np.zeros((b_count, n, n))
        b, t, i = np.nonzero(sent)
        np.add.at(link_busy, (b, i, dest[b, t, i]), tx_end_s[b, t, i] - tx_start_s[b, t, i])
        out["link_utilisation"] = link_busy / span[:, None, None]
    return out


def mean_ci95(values) -> tuple[float, float, float]:
    """Mean and its two-sided 95% Student-t confidence interval, for independent values.
    From one value no interval can be computed: the ends are then NaN (reports print "n/a")."""
    from scipy import (
        stats,  # only reports need it; the simulator and nodes load core without it
    )

    x = np.asarray(values, dtype=np.float64).reshape(-1)
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def json_safe(value):
    """``value`` with every NaN or infinite float replaced by None, so that ``json.dumps`` writes
    strict JSON (an interval that cannot be computed is ``null``)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_probes(value: float | str | None) -> str:
    """A probes-per-task cell of a table: a measured mean with two decimals, a count (a
    learned method's, from its observation layout) or a word (``full``) as it is, empty where
    there are none (the bound)."""
    if value is None:
        return ""
    if isinstance(value, (str, int)):
        return str(value)
    return f"{value:.2f}"
