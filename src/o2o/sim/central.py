"""The centralized full-information reference and the per-task success bound (yardsticks the
paper lacks).

``central`` is a yardstick, not a contender: one scheduler that sees every queue and every task
in flight in the simulator, and places the tasks of a slot one node at a time (node index
order), each with the exact predicted completion on every candidate node given everything
already in the system (including the tasks placed before it in the same slot). A node is
feasible when the task would finish there by its deadline without making a task already
placed there miss its own (FIFO order is by arrival, so a later task can overtake one still
on the wire). Of the feasible nodes it takes the most reliable (rel_ij), else the one where
the task would finish earliest. It knows the failure clocks of the tasks already in the system,
as the simulator does, but not those of the task it places: for that one it uses rel_ij.

``bound``: max_j rel_ij * 1[T^t_ij + T^c_j <= d] bounds one task's success probability under
any scheduler; its mean over an episode's tasks bounds the expected success rate.
"""

from __future__ import annotations

import numpy as np

from o2o.core.episodes import Episodes
from o2o.core.network import Network
from o2o.sim.engine import Engine, settle_stage


def task_success_bound(network: Network, episodes: Episodes) -> np.ndarray:
    """(B, T, N): the bound for every task (NaN where there is no task)."""
    n = network.n
    tx = episodes.size_bytes[..., None] / network.link_rate_Bps[None, None]     # (B,T,N,N) i->j
    tx = np.where(np.eye(n, dtype=bool)[None, None], 0.0, tx)
    ex = episodes.cycles[..., None] / network.capacity_hz[None, None, None, :]
    rel = np.exp(-network.link_fail_rate[None, None] * tx - network.node_fail_rate[None, None, None, :] * ex)
    feasible = tx + ex <= episodes.deadline_s[..., None]
    best = np.max(np.where(feasible, rel, 0.0), axis=-1)
    return np.where(episodes.has_task, best, np.nan)


def episode_bound(network: Network, episodes: Episodes) -> np.ndarray:
    """(B,): mean bound over each episode's tasks (an upper bound on its expected success rate)."""
    per_task = task_success_bound(network, episodes)
    tasks = episodes.has_task.sum(axis=(1, 2))
    return np.nansum(per_task, axis=(1, 2)) / np.maximum(tasks, 1)


class Central:
    """Engine-level scheduler: ``decide(engine) -> (actions (B, N), probs (B, N))``."""

    name = "central"

    def decide(self, engine: Engine) -> tuple[np.ndarray, np.ndarray]:
        e, net = engine, engine.net
        B, N, t = e.B, e.N, e.t
        now = e.now_s
        actions = np.full((B, N), N, dtype=np.int64)
        probs = np.full((B, N), np.nan)
        has = e.ep.has_task[:, t, :]
        if not has.any():
            return actions, probs
        # Pending arrivals at every execution queue: (B, N, K) arrival time, source, index.
        arr, src, tt = self._pending(e)
        bs = np.arange(B)
        exec_new = e.ep.cycles[:, t, :, None] / net.capacity_hz[None, None, :]      # (B, i, j)
        tx_new = e.ep.size_bytes[:, t, :, None] / net.link_rate_Bps[None]           # (B, i, j)
        tx_new[:, np.arange(N), np.arange(N)] = 0.0
        rel = np.exp(-net.link_fail_rate[None] * tx_new - net.node_fail_rate[None, None, :] * exec_new)
        due = e.due_s[:, t, :]
        for i in range(N):
            rows = has[:, i]
            if not rows.any():
                continue
            # Send queue i -> j: starts when the link is free, dropped if it cannot make it.
            send_start = np.maximum(now, e.link_free[:, i, :])
            send_start[:, i] = now
            reach = send_start + tx_new[:, i, :]                                       # (B, j)
            send_dropped = reach + exec_new[:, i, :] > due[:, i, None]
            finish, harms = self._finish_at(e, arr, src, tt, reach, i, exec_new[:, i, :])
            finish = np.where(send_dropped, np.inf, finish)
            feasible = (finish <= due[:, i, None]) & ~harms
            best_rel = np.argmax(np.where(feasible, rel[:, i, :], -1.0), axis=1)
            earliest = np.argmin(np.where(np.isfinite(finish), finish, reach + 1e9), axis=1)
            choice = np.where(feasible.any(axis=1), best_rel, earliest)
            actions[rows, i] = choice[rows]
            # The placed task joins the pending arrivals seen by the next nodes, exactly as the
            # engine will settle its transmission.
            j = choice
            tx = tx_new[bs, i, j]
            remote = j != i
            start, end, dropped, failed = settle_stage(
                now, np.where(remote, e.link_free[bs, i, j], now), tx, exec_new[bs, i, j], due[:, i],
                np.where(remote, e.ep.tx_fail_clock[:, t, i] * e.inv_beta[i, j], np.inf))
            arrives = rows & ~dropped & ~failed
            arr, src, tt = self._append(arr, src, tt, arrives, j, np.where(arrives, end, np.inf), i, t)
        return actions, probs

    @staticmethod
    def _pending(e: Engine):
        lo = max(0, e.t - e.horizon)
        pend = e.pending_arrival_s[:, lo:e.t, :]
        b, dt, i = np.nonzero(np.isfinite(pend))
        ts = dt + lo
        j = e.dest[b, ts, i]
        B, N = e.B, e.N
        counts = np.zeros((B, N), dtype=np.int64)
        np.add.at(counts, (b, j), 1)
        K = max(int(counts.max()) if counts.size else 0, 0) + N
        arr = np.full((B, N, K), np.inf)
        src = np.full((B, N, K), -1, dtype=np.int64)
        tt = np.full((B, N, K), -1, dtype=np.int64)
        order = np.lexsort((i, e.pending_arrival_s[b, ts, i], j, b))
        b, ts, i, j = b[order], ts[order], i[order], j[order]
        start = np.r_[True, (b[1:] != b[:-1]) | (j[1:] != j[:-1])] if b.size else np.zeros(0, bool)
        first = np.maximum.accumulate(np.where(start, np.arange(b.size), 0)) if b.size else start
        rank = np.arange(b.size) - first
        arr[b, j, rank] = e.pending_arrival_s[b, ts, i]
        src[b, j, rank] = i
        tt[b, j, rank] = ts
        return arr, src, tt

    @staticmethod
    def _append(arr, src, tt, rows, j, when, i, t):
        """Add one arrival per episode (where ``rows``) at node j; keep (time, source) order."""
        B = arr.shape[0]
        bs = np.arange(B)[rows]
        jj = j[rows]
        slot = np.argmax(~np.isfinite(arr[bs, jj]), axis=1)  # first free position
        arr[bs, jj, slot] = when[rows]
        src[bs, jj, slot] = i
        tt[bs, jj, slot] = t
        order = np.lexsort((src, arr), axis=-1)
        return (np.take_along_axis(arr, order, -1), np.take_along_axis(src, order, -1),
                np.take_along_axis(tt, order, -1))

    @staticmethod
    def _finish_at(e: Engine, arr, src, tt, reach, i, exec_new):
        """Place a task from i reaching node j at ``reach`` into j's FIFO among the pending
        arrivals (run with their known clocks), for every candidate j at once.

        Returns (finish (B, N), harms (B, N)): when the task would finish (assuming it does not
        fail), and whether placing it there would make a pending task behind it miss its
        deadline that would otherwise have made it."""
        B, N, K = arr.shape
        free_without = e.cpu_free.copy()
        free_with = e.cpu_free.copy()
        placed = np.zeros((B, N), dtype=bool)
        finish = np.full((B, N), np.inf)
        harms = np.zeros((B, N), dtype=bool)
        bidx = np.arange(B)[:, None]
        jidx = np.arange(N)[None, :]

        def place(where):
            nonlocal free_with, placed, finish
            f = np.maximum(reach, free_with) + exec_new
            finish = np.where(where, f, finish)
            free_with = np.where(where, f, free_with)
            placed = placed | where

        for k in range(K):
            a = arr[:, :, k]
            valid = np.isfinite(a)
            if not valid.any():
                break
            behind = valid & ~((a < reach) | ((a == reach) & (src[:, :, k] < i)))
            place(behind & ~placed)
            ts = np.maximum(tt[:, :, k], 0)
            s = np.maximum(src[:, :, k], 0)
            exec_s = e.ep.cycles[bidx, ts, s] / e.net.capacity_hz[jidx]
            due = e.due_s[bidx, ts, s]
            fail_after = e.ep.exec_fail_clock[bidx, ts, s] * e.inv_alpha[jidx]
            _, end0, drop0, _ = settle_stage(a, free_without, exec_s, 0.0, due, fail_after)
            _, end1, drop1, _ = settle_stage(a, free_with, exec_s, 0.0, due, fail_after)
            free_without = np.where(valid, end0, free_without)
            free_with = np.where(valid, end1, free_with)
            harms |= valid & drop1 & ~drop0
        place(~placed)
        return finish, harms
