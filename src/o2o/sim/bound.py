"""Upper bounds on an episode's expected success rate, valid for any non-anticipating scheduler
(every heuristic, the learned actors, the centralized references): yardsticks the paper lacks.

``bound-task`` (``task_success_bound``, ``episode_task_bound``): max_j rel_kj * 1[T^t_kj + T^c_kj
<= d_k] bounds one task's success probability (paper eqs. 3-5); its mean over an episode's
tasks ignores contention.

``bound`` (``episode_lp_bound``): a linear programme per episode that also charges capacity.
Its variable w_kj stands for P(task k succeeds on node j), for every j where k is feasible alone:

* k's own failure clocks are independent of where it is sent, so w_kj <= P(k sent to j) * rel_kj
  and sum_j w_kj / rel_kj <= 1;
* a task that succeeds on j ran there for c_k / F_j seconds inside its execution window
  [a_k + T^t_kj, a_k + d_k], and j runs one task at a time: for every window [A, B], the work of
  the successful tasks whose execution window lies inside it is at most F_j (B - A), on every
  sample path, hence in expectation: sum w_kj c_k <= F_j (B - A);
* the same for every link i -> j, with the input sizes s_k, the rate r_ij and the transmission
  window [a_k, a_k + d_k - T^c_kj].

Only successful work is charged: a failed or dropped task may free its node early, so charging
the work of every task sent would not be a bound. Any subset of windows keeps the bound valid;
``window_family`` picks windows on the slot grid of many lengths (the binding limit is the
capacity summed over many slots). The objective is max sum w_kj; divided by the episode's tasks it
bounds the expected success rate, and it is <= ``bound-task`` (sum_j w_kj <= max_j rel_kj). The
argument in full is in docs/yardsticks.md.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from o2o.core.episodes import Episodes, sample_episodes
from o2o.core.network import Network
from o2o.core.scenario import Scenario

#: Rounding slack when putting a window's ends on the slot grid, in slots.
GRID_TOL = 1e-9
#: Pairs (k, j) with rel_kj below this are left out of the LP (1 / rel_kj would overflow) and
#: their rel_kj is added to its optimum instead: w_kj <= rel_kj, so the bound stays valid.
REL_FLOOR = 1e-12


def stage_times(network: Network, episodes: Episodes):
    """(tx, ex, rel, feasible), each (B, T, N, N) [b, t, i, j]: the transmission and execution
    times of the task of (t, i) on j, its reliability, and whether it can meet its deadline there
    when alone."""
    n = network.n
    tx = episodes.size_bytes[..., None] / network.link_rate_Bps[None, None]     # (B,T,N,N) i->j
    tx = np.where(np.eye(n, dtype=bool)[None, None], 0.0, tx)
    ex = episodes.cycles[..., None] / network.capacity_hz[None, None, None, :]
    rel = np.exp(-network.link_fail_rate[None, None] * tx - network.node_fail_rate[None, None, None, :] * ex)
    feasible = (tx + ex <= episodes.deadline_s[..., None]) & episodes.has_task[..., None]
    return tx, ex, rel, feasible


def task_success_bound(network: Network, episodes: Episodes) -> np.ndarray:
    """(B, T, N): ``bound-task`` for every task (NaN where there is no task)."""
    _, _, rel, feasible = stage_times(network, episodes)
    best = np.max(np.where(feasible, rel, 0.0), axis=-1)
    return np.where(episodes.has_task, best, np.nan)


def episode_task_bound(network: Network, episodes: Episodes) -> np.ndarray:
    """(B,): ``bound-task``, the mean per-task bound over each episode's tasks."""
    per_task = task_success_bound(network, episodes)
    tasks = episodes.has_task.sum(axis=(1, 2))
    return np.nansum(per_task, axis=(1, 2)) / np.maximum(tasks, 1)


def window_family(span_min: int, horizon: int) -> list[tuple[int, int]]:
    """(length, stride) pairs, in slots, of the windows [A, A + length] with A on the slot grid:
    every start for the shortest lengths (just longer than the shortest execution window), then
    doubling lengths with strides that grow with them, up to the whole episode."""
    family, extra = [], 0
    while span_min + extra < horizon:
        length = span_min + extra
        family.append((length, max(1, extra // 4)))
        extra = 1 if extra == 0 else 2 * extra
    family.append((horizon, 1))
    return family


def _window_rows(res_of_var, lo_idx, hi_idx, amount, rel, slot_s, horizon):
    """The windows of one resource type (nodes or links), as rows over group totals.

    The variables on one resource with the same window [lo, hi] (grid indices) form a group with
    total work y_g >= sum amount_v w_v; a window row is ``sum y_g <= slot_s * length`` over the
    groups inside it, for every resource and window of ``window_family``. Rows that cannot bind
    (the work of every member at its most, w_v = rel_v, fits) are left out. Returns
    (group_of_var, rows, cols, rhs): window rows as (row, group) pairs."""
    key = (res_of_var * (horizon + 1) + lo_idx) * (horizon + 1) + hi_idx
    groups, group_of_var = np.unique(key, return_inverse=True)
    g_res = groups // (horizon + 1) ** 2
    g_lo, g_hi = (groups // (horizon + 1)) % (horizon + 1), groups % (horizon + 1)
    g_full = np.bincount(group_of_var, weights=amount * rel, minlength=groups.size)
    rows, cols, rhs = [], [], []
    bounds = np.searchsorted(g_res, np.arange(g_res.max() + 2))
    family = window_family(max(int((g_hi - g_lo).min()), 1), horizon)
    for res in range(g_res.max() + 1):
        members = np.arange(bounds[res], bounds[res + 1])
        if members.size == 0:
            continue
        lo, hi, full = g_lo[members], g_hi[members], g_full[members]
        for length, stride in family:
            starts = np.arange(0, max(horizon - length, 0) + 1, stride)
            inside = (lo[None, :] >= starts[:, None]) & (hi[None, :] <= starts[:, None] + length)
            cap = slot_s * length
            binds = (inside * full[None, :]).sum(axis=1) > cap * (1 + 1e-12)
            for w in np.nonzero(binds)[0]:
                cols.append(members[inside[w]])
                rows.append(np.full(cols[-1].size, len(rhs)))
                rhs.append(cap)
    if not rhs:
        return group_of_var, groups.size, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return group_of_var, groups.size, np.concatenate(rows), np.concatenate(cols), np.asarray(rhs)


def lp_bound_one(scenario: Scenario, network: Network, episodes: Episodes, b: int) -> tuple[float, int]:
    """``bound``'s LP for episode ``b``: (max expected successes, tasks)."""
    ep = episodes.select(slice(b, b + 1))
    tx, ex, rel, feasible = (x[0] for x in stage_times(network, ep))
    tasks = int(ep.has_task.sum())
    faint = feasible & (rel < REL_FLOOR)
    faint_mass = float(rel[faint].sum())
    t, i, j = np.nonzero(feasible & ~faint)
    if t.size == 0:
        return faint_mass, tasks
    slot_s, n = scenario.slot_s, network.n
    arrive = t * slot_s
    due = arrive + ep.deadline_s[0, t, i]
    tx_v, ex_v, rel_v = tx[t, i, j], ex[t, i, j], rel[t, i, j]
    nv = t.size
    # sum_j w_kj / rel_kj <= 1 for every task k = (t, i).
    _, task_row = np.unique(t * n + i, return_inverse=True)
    blocks = [(task_row, np.arange(nv), 1.0 / rel_v)]
    rhs = [np.ones(task_row.max() + 1)]
    n_rows, n_cols = rhs[0].size, nv
    horizon = int(np.ceil(due.max() / slot_s - GRID_TOL))
    remote = np.nonzero(i != j)[0]
    # Execution windows [a + T^t, a + d] on every node j; transmission windows
    # [a, a + d - T^c] on every link i -> j (local tasks use no link). Work in seconds.
    for var, res_id, lo_s, hi_s, amount in (
        (np.arange(nv), j, arrive + tx_v, due, ex_v),
        (remote, (i * n + j)[remote], arrive[remote], (due - ex_v)[remote], tx_v[remote]),
    ):
        if var.size == 0:
            continue
        lo = np.floor(lo_s / slot_s + GRID_TOL).astype(np.int64)
        hi = np.ceil(hi_s / slot_s - GRID_TOL).astype(np.int64)
        group_of_var, n_groups, rows, cols, caps = _window_rows(res_id, lo, hi, amount, rel_v[var], slot_s, horizon)
        if caps.size == 0:
            continue
        # y_g >= sum amount_v w_v (group rows), then sum y_g <= capacity (window rows).
        y0 = n_cols
        blocks.append((n_rows + group_of_var, var, amount))
        blocks.append((n_rows + np.arange(n_groups), y0 + np.arange(n_groups), -np.ones(n_groups)))
        rhs.append(np.zeros(n_groups))
        n_rows += n_groups
        blocks.append((n_rows + rows, y0 + cols, np.ones(rows.size)))
        rhs.append(caps)
        n_rows += caps.size
        n_cols += n_groups
    r, c, v = (np.concatenate(x) for x in zip(*blocks))
    a_ub = coo_matrix((v, (r, c)), shape=(n_rows, n_cols)).tocsr()
    objective = np.r_[-np.ones(nv), np.zeros(n_cols - nv)]
    solution = linprog(objective, A_ub=a_ub, b_ub=np.concatenate(rhs), bounds=(0, None), method="highs-ipm")
    if solution.status != 0:
        raise RuntimeError(f"the bound's LP failed: {solution.message}")
    return float(-solution.fun) + faint_mass, tasks


def episode_lp_bound(scenario: Scenario, network: Network, episodes: Episodes) -> np.ndarray:
    """(B,): ``bound``, the LP's expected successes over each episode's tasks."""
    out = np.zeros(episodes.has_task.shape[0])
    for b in range(out.size):
        successes, tasks = lp_bound_one(scenario, network, episodes, b)
        out[b] = successes / max(tasks, 1)
    return out


def mean_bounds(scenario: Scenario, network: Network, seeds, lp_episodes: int | None = None) -> dict:
    """Both bounds' means over the episodes ``seeds``: ``bound-task`` on all of them, ``bound``
    (the LP, ~1.5 s per paper-sim episode) on the first ``lp_episodes`` (all when None);
    ``bound_episodes`` says how many."""
    seeds = list(seeds)
    episodes = sample_episodes(scenario, network, seeds)
    lp_count = len(seeds) if lp_episodes is None else min(lp_episodes, len(seeds))
    lp = episode_lp_bound(scenario, network, episodes.select(slice(0, lp_count)))
    return {"bound": float(lp.mean()), "bound-task": float(episode_task_bound(network, episodes).mean()),
            "bound_episodes": lp_count}
