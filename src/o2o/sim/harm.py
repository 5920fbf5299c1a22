"""The ``counterfactual`` reward credit: each decision's own outcome minus the harm it imposed on
the other tasks (a difference reward, D_i = G(z) - G(z_-i)).

The node credit gives node i the outcome of its own task (paper IV-B: +1 SUCCESS, -1 DROP or a
failure) and ignores the delay that task causes to the tasks queued behind it. Here

    r_t^i = o_x - w * H_x,    H_x = sum over tasks k != x of (o'_k - o_k)

for the task x that node i decided at slot t (0 without a task), where o_k is task k's actual
outcome (+1 / -1), o'_k its outcome in the counterfactual episode in which task x never
existed and every other decision is the same, and w the harm weight (credit name
``counterfactual-w<w>``; ``counterfactual`` is w = 1, where r is exactly G - G_-x: the team's summed outcomes with x
minus those without it). H_x is usually >= 0 (x delayed others into a drop), but may be
negative: a task dropped in the episode may, when started earlier without x, run and occupy the
node longer, and drop a later one.

**Exact, not an approximation.** In the system model (paper III-A) task x uses two FIFO
resources only: the send queue i -> j (when j != i) and the execution queue of its destination
j. The only tasks whose times change without x are therefore the later tasks of node i on link
i -> j (no other node sends on that link), and, through their arrival times at j, the tasks of
j's execution queue; an execution ends the task, so nothing cascades further. The failure clocks
(paper eqs. 3-5: a stage fails when its Exp clock runs out inside it) are the episode's, the
stages' lengths do not depend on when they start, so a task fails in the counterfactual exactly
when it did in the episode, unless it is dropped (the drop rule, checked again at every head of
queue) or, dropped in the episode, now runs (its clock decides). Both replays stop at the first
task after which the resource is free at the same time as in the episode (the end of the
affected busy period): everything later is identical. The only thing held fixed that would
really change is the other nodes' decisions (they observe the queues): the usual difference
reward assumption.

A DROPPED task x used no resource (the drop rule frees the queue at the moment it starts), so
its harm is 0. The harm is computed after the episode (it needs every later arrival at j), from
the engine's records: online from the simulator, offline by replaying a simulated log's
actions through the simulator (``o2o.logs.transitions``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from o2o.core.outcomes import SUCCESS, fails_during, misses_deadline

# The engine's drop and failure rules (o2o.core.outcomes), compiled for scalars.
_misses_deadline = njit(cache=True, inline="always")(misses_deadline)
_fails_during = njit(cache=True, inline="always")(fails_during)


@njit(cache=True, inline="always")
def _stage(start, stage, after, due, fail_after):
    """(dropped, failed, end) of a stage (a transmission or an execution) started at ``start``:
    dropped when it cannot finish, with ``after`` seconds of work still behind it, by ``due``;
    failed when its failure clock (``fail_after`` seconds) runs out first; ``end`` when the
    queue is free again."""
    dropped = _misses_deadline(start, stage, after, due)
    failed = (not dropped) and _fails_during(fail_after, stage)
    if dropped:
        return dropped, failed, start
    if failed:
        return dropped, failed, start + fail_after
    return dropped, failed, start + stage


@njit(cache=True)
def _episode_harm(has, dest, outcome, tx_start, tx_s, exec_arrive, exec_s, due, end_s, tx_clock,
                  exec_clock, inv_alpha, inv_beta, slot_s, q_t, q_i, q_off, pos):
    """H (T, N) of one episode. ``q_t``, ``q_i``: the tasks that reached an execution queue,
    grouped by destination and in each group in FIFO order (arrival time, then source); group j
    is ``q_off[j]:q_off[j+1]``; ``pos[t, i]`` a task's index in that order (-1: never arrived)."""
    T, n = has.shape
    harm = np.zeros((T, n))
    removed = np.zeros((T, n), np.bool_)
    l_t = np.empty(T, np.int64)          # the later tasks of the link that change
    l_arr = np.empty(T, np.bool_)         # ... whether they reach j in the counterfactual
    l_when = np.empty(T)                  # ... and when
    for t in range(T):
        for i in range(n):
            if not has[t, i]:
                continue
            j = dest[t, i]
            h = 0.0
            # 1. The send queue i -> j without x: start from the moment x started (the link
            #    was free then or became free then; later tasks arrive later).
            n_l = 0
            if j != i:
                free = tx_start[t, i]
                for t2 in range(t + 1, T):
                    if not has[t2, i] or dest[t2, i] != j:
                        continue
                    now = t2 * slot_s
                    tx = tx_s[t2, i]
                    start = max(now, free)
                    dropped, failed, end = _stage(start, tx, exec_s[t2, i], due[t2, i],
                                                  tx_clock[t2, i] * inv_beta[i, j])
                    act_arrived = not np.isnan(exec_arrive[t2, i])
                    act_end = exec_arrive[t2, i] if act_arrived else end_s[t2, i]
                    arrived = (not dropped) and (not failed)
                    if end == act_end and arrived == act_arrived:
                        break  # the link is free at the same time as in the episode
                    l_t[n_l], l_arr[n_l], l_when[n_l] = t2, arrived, end
                    n_l += 1
                    free = end
            # 2. The execution queue of j without x and with the link's new arrivals.
            lo, hi = q_off[j], q_off[j + 1]
            first = pos[t, i] if pos[t, i] >= 0 else hi   # first position that changes
            last = pos[t, i]                              # last position of a removed task
            if pos[t, i] >= 0:
                removed[t, i] = True
            for a in range(n_l):
                k = l_t[a]
                act_fb = 1.0 if outcome[k, i] == SUCCESS else -1.0
                if pos[k, i] >= 0:
                    removed[k, i] = True
                    first = min(first, pos[k, i])
                    last = max(last, pos[k, i])
                    if not l_arr[a]:
                        h += -1.0 - act_fb     # reached j in the episode, lost on the link now
                if l_arr[a]:
                    p = lo
                    while p < hi and (exec_arrive[q_t[p], q_i[p]] < l_when[a] or
                                      (exec_arrive[q_t[p], q_i[p]] == l_when[a] and q_i[p] < i)):
                        p += 1
                    first = min(first, p)
            if first < hi:
                free = end_s[q_t[first - 1], q_i[first - 1]] if first > lo else 0.0
                p = first
                a = 0
                while True:
                    while p < hi and removed[q_t[p], q_i[p]]:
                        p += 1
                    while a < n_l and not l_arr[a]:
                        a += 1
                    if p >= hi and a >= n_l:
                        break
                    if a < n_l and (p >= hi or l_when[a] < exec_arrive[q_t[p], q_i[p]] or
                                    (l_when[a] == exec_arrive[q_t[p], q_i[p]] and i < q_i[p])):
                        kt, ki, when, from_link = l_t[a], i, l_when[a], True
                    else:
                        kt, ki, when, from_link = q_t[p], q_i[p], exec_arrive[q_t[p], q_i[p]], False
                    dropped, failed, free = _stage(max(when, free), exec_s[kt, ki], 0.0, due[kt, ki],
                                                   exec_clock[kt, ki] * inv_alpha[j])
                    cf_fb = 1.0 if not (dropped or failed) else -1.0
                    h += cf_fb - (1.0 if outcome[kt, ki] == SUCCESS else -1.0)
                    if from_link:
                        a += 1
                    else:
                        if a >= n_l and p > last and free == end_s[kt, ki]:
                            break  # the node is free at the same time as in the episode
                        p += 1
            removed[t, i] = False
            for a in range(n_l):
                removed[l_t[a], i] = False
            harm[t, i] = h
    return harm


def episode_harm(has_task, dest, outcome, tx_start_s, tx_s, exec_arrive_s, exec_s, due_s, end_s,
                 tx_fail_clock, exec_fail_clock, network, slot_s: float) -> np.ndarray:
    """H (T, N) of one episode from the simulator's per-task records (``Engine`` arrays of one
    batch row): the harm each task x imposed on the other tasks' outcomes, sum over k != x of
    (outcome of k without x) - (outcome of k); 0 where there is no task."""
    has = np.asarray(has_task, dtype=bool)
    arrive = np.asarray(exec_arrive_s, dtype=np.float64)
    t_idx, i_idx = np.nonzero(has & ~np.isnan(arrive))
    j_idx = np.asarray(dest)[t_idx, i_idx]
    order = np.lexsort((i_idx, arrive[t_idx, i_idx], j_idx))  # by destination, time, source
    q_t, q_i = t_idx[order].astype(np.int64), i_idx[order].astype(np.int64)
    n = has.shape[1]
    q_off = np.zeros(n + 1, dtype=np.int64)
    q_off[1:] = np.cumsum(np.bincount(j_idx, minlength=n))
    pos = np.full(has.shape, -1, dtype=np.int64)
    pos[q_t, q_i] = np.arange(q_t.shape[0])
    inv_alpha = np.where(network.node_fail_rate > 0, 1.0 / np.maximum(network.node_fail_rate, 1e-300), np.inf)
    inv_beta = np.where(network.link_fail_rate > 0, 1.0 / np.maximum(network.link_fail_rate, 1e-300), np.inf)
    f = np.ascontiguousarray
    return _episode_harm(f(has), f(dest, dtype=np.int64), f(outcome), f(tx_start_s, dtype=np.float64),
                         f(tx_s, dtype=np.float64), f(arrive), f(exec_s, dtype=np.float64),
                         f(due_s, dtype=np.float64), f(end_s, dtype=np.float64),
                         f(tx_fail_clock, dtype=np.float64), f(exec_fail_clock, dtype=np.float64),
                         f(inv_alpha), f(inv_beta), float(slot_s), q_t, q_i, q_off, pos)


def engine_harm(engine) -> np.ndarray:
    """H (B, T, N) of a finished ``Engine`` batch."""
    if not engine.done:
        raise RuntimeError("the harm of a decision is known once the episode is drained")
    e, ep = engine, engine.ep
    return np.stack([episode_harm(ep.has_task[b], e.dest[b], e.outcome[b], e.tx_start_s[b], e.tx_s[b],
                                  e.exec_arrive_s[b], e.exec_s[b], e.due_s[b], e.end_s[b],
                                  ep.tx_fail_clock[b], ep.exec_fail_clock[b], e.net, e.slot_s)
                     for b in range(e.B)])


def counterfactual_rewards(node_rewards: np.ndarray, harm: np.ndarray, weight: float) -> np.ndarray:
    """r = own outcome - w * H, per node at its decision slot (0 where there is no task)."""
    return np.asarray(node_rewards, dtype=np.float64) - float(weight) * np.asarray(harm, dtype=np.float64)


def log_harm(scenario, network, log) -> np.ndarray:
    """H (T, N) of one logged episode: its tasks and failure clocks are drawn again from its
    ``episode_seed`` and its logged actions replayed through the simulator. A log the
    simulator does not reproduce (other tasks, or other outcomes: a testbed run, whose times
    are measured) is refused, since its counterfactual cannot be known."""
    from o2o.core.episodes import sample_episodes
    from o2o.core.errors import UserError
    from o2o.sim.engine import Engine

    ep = sample_episodes(scenario, network, [int(log.episode_seed)])
    has = np.asarray(log.has_task, dtype=bool)
    same_tasks = (np.array_equal(ep.has_task[0], has)
                  and np.array_equal(ep.size_bytes[0][has], np.asarray(log.size_bytes)[has])
                  and np.array_equal(ep.cycles[0][has], np.asarray(log.cycles)[has]))
    if not same_tasks:
        raise UserError(f"episode {log.episode_index}: its tasks are not those of episode seed "
                        f"{log.episode_seed} on this scenario and network, so the counterfactual "
                        f"credit cannot replay it; export it with --reward-credit node")
    engine = Engine(scenario, network, ep)
    actions = np.asarray(log.action, dtype=np.int64)
    n = network.n
    for t in range(scenario.slots):
        engine.step(np.where(has[t], actions[t], n)[None])
    if not np.array_equal(engine.outcome[0], np.asarray(log.outcome)) or \
            not np.array_equal(np.where(has, engine.dest[0], -1), np.where(has, np.asarray(log.dest), -1)):
        raise UserError(f"episode {log.episode_index} (seed {log.episode_seed}): the simulator does "
                        f"not reproduce its logged outcomes (a testbed log?); the counterfactual "
                        f"credit needs simulated logs: export it with --reward-credit node")
    return engine_harm(engine)[0]
