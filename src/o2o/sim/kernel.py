"""One slot of the engine as compiled loops (numba), task by task.

``Engine.step`` calls ``step_slot`` with the engine's arrays; the loops update them in place.
The rules are those of the module ``o2o.sim.engine`` and of ``o2o.core.outcomes`` (paper III-A,
eqs. 1-5): a send queue i -> j and an execution queue j are FIFO, a task is dropped at the head
of a queue when it can no longer meet its deadline, and a stage fails when its exponential
failure clock runs out inside it.

Every floating-point operation is the one the batched array code performs, in the same order
wherever the order changes a result (the +/- events of the observable sums that land on the
same boundary are added in the order the array code adds them), so the outcomes, times and
everything a node observes are the same to the bit as before (``tests/sim/test_kernel.py``
runs both on the same episodes).

numba caches the compiled loops next to this file, keyed on this file alone: after a change to
``o2o/core/outcomes.py`` (the rules and SLOT_TOL compiled in here), delete this folder's
``__pycache__/kernel.*.nb*`` files (``tests/sim/test_kernel.py`` would catch a stale cache: its
reference reads ``outcomes.py`` directly).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from o2o.core.outcomes import (
    DROP,
    EXEC_FAIL,
    PENDING,
    SLOT_TOL,
    SUCCESS,
    TRANS_FAIL,
    fails_during,
    misses_deadline,
)

# The drop and failure rules, written once in o2o.core.outcomes, compiled for scalars here.
_misses_deadline = njit(cache=True, inline="always")(misses_deadline)
_fails_during = njit(cache=True, inline="always")(fails_during)


@njit(cache=True, inline="always")
def _boundary(t_s: float, slot_s: float) -> int:
    """The first slot boundary at or after ``t_s`` seconds (within SLOT_TOL)."""
    return int(math.ceil(t_s / slot_s - SLOT_TOL))


@njit(cache=True, inline="always")
def _end(b, t, i, outcome_code, when, outcome, end_s, reward, reward_by_decision, slot_s, T):
    """Settle task (b, t, i) with ``outcome_code`` at ``when`` and book its +1/-1 feedback."""
    outcome[b, t, i] = outcome_code
    end_s[b, t, i] = when
    feedback = 1.0 if outcome_code == SUCCESS else -1.0
    slot = min(int(math.floor(when / slot_s + SLOT_TOL)), T - 1)
    reward[b, slot] += feedback
    reward_by_decision[b, t] += feedback


@njit(cache=True)
def _send(b, t, now, actions, ep_has, ep_size, ep_tx_clock, link_rate, inv_beta, slot_s, ring, T,
          link_free, outcome, end_s, tx_start_s, tx_s, exec_arrive_s, pending_arrival_s, exec_s,
          due_s, reward, reward_by_decision, ev_in_flight, ev_send_c, ev_send_k):
    """Local tasks join their own execution queue now; the others join send queue i -> j,
    settled at once since the link is FIFO and one task per node arrives per slot."""
    n = ep_has.shape[2]
    k_now = max(_boundary(now, slot_s), t + 1)
    for i in range(n):
        if not ep_has[b, t, i]:
            continue
        j = actions[b, i]
        if j == i:
            exec_arrive_s[b, t, i] = now
            pending_arrival_s[b, t, i] = now
            continue
        tx = ep_size[b, t, i] / link_rate[i, j]
        start = max(now, link_free[b, i, j])
        dropped = _misses_deadline(start, tx, exec_s[b, t, i], due_s[b, t, i])
        fail_after = ep_tx_clock[b, t, i] * inv_beta[i, j]
        failed = (not dropped) and _fails_during(fail_after, tx)
        if dropped:
            end = start
        elif failed:
            end = start + fail_after
        else:
            end = start + tx
        link_free[b, i, j] = end
        tx_s[b, t, i] = tx
        tx_start_s[b, t, i] = start
        if dropped or failed:
            _end(b, t, i, DROP if dropped else TRANS_FAIL, end, outcome, end_s, reward,
                 reward_by_decision, slot_s, T)
        else:
            exec_arrive_s[b, t, i] = end
            pending_arrival_s[b, t, i] = end
        # What the nodes observe: in_flight (receiver-major), and the send backlog, waiting
        # (the full s / r_ij) then on the wire. One task per (i, j): no two events collide.
        k_start, k_end = _boundary(start, slot_s), _boundary(end, slot_s)
        if k_end > k_now:
            ev_in_flight[k_now % ring, b, j, i] += 1
            ev_in_flight[k_end % ring, b, j, i] -= 1
        if k_start > k_now:
            ev_send_c[k_now % ring, b, i, j] += tx
            ev_send_c[k_start % ring, b, i, j] -= tx
        k0 = max(k_start, t + 1)
        if k_end > k0:
            ev_send_c[k0 % ring, b, i, j] += start + tx
            ev_send_c[k_end % ring, b, i, j] -= start + tx
            ev_send_k[k0 % ring, b, i, j] += 1.0
            ev_send_k[k_end % ring, b, i, j] -= 1.0


@njit(cache=True, inline="always")
def _queue_events(ev, b, j, k0, k1, value, ring):
    """+value at boundary k0 and -value at k1 of node j's sum, for each task of its queue that
    spans a boundary (k1 > k0), in FIFO order: all + events first, then all - events, as the
    array code added them (two tasks' events may land on the same boundary, and float sums
    depend on the order)."""
    for a in range(k0.shape[0]):
        if k1[a] > k0[a]:
            ev[k0[a] % ring, b, j] += value[a]
    for a in range(k0.shape[0]):
        if k1[a] > k0[a]:
            ev[k1[a] % ring, b, j] -= value[a]


@njit(cache=True)
def _execute_window(b, window, t_now, horizon, slot_s, ring, T, track, ep_exec_clock, inv_alpha,
                    cpu_free, dest, outcome, end_s, exec_arrive_s, pending_arrival_s, exec_start_s, exec_s,
                    due_s, reward, reward_by_decision, ev_exec_len, ev_exec_wait, ev_backlog_c, ev_backlog_k):
    """Run every arrival at an execution queue during slot ``window`` through its node's FIFO at
    full capacity: by arrival time, ties by source node."""
    n = pending_arrival_s.shape[2]
    lo = max(0, window - horizon)
    hi = min(window + 1, T)
    limit = (window + 1 - SLOT_TOL) * slot_s
    count = 0
    for ts in range(lo, hi):
        for i in range(n):
            if pending_arrival_s[b, ts, i] < limit:
                count += 1
    if count == 0:
        return
    q_j = np.empty(count, np.int64)
    q_ts = np.empty(count, np.int64)
    q_i = np.empty(count, np.int64)
    q_when = np.empty(count)
    k = 0
    for ts in range(lo, hi):
        for i in range(n):
            if pending_arrival_s[b, ts, i] < limit:
                pending_arrival_s[b, ts, i] = np.inf
                q_j[k], q_ts[k], q_i[k] = dest[b, ts, i], ts, i
                q_when[k] = exec_arrive_s[b, ts, i]
                k += 1
    # Stable insertion sort by (destination, arrival time, source): the FIFO order.
    for a in range(1, count):
        j, ts, i, when = q_j[a], q_ts[a], q_i[a], q_when[a]
        c = a - 1
        while c >= 0 and (q_j[c] > j or (q_j[c] == j and (q_when[c] > when or (q_when[c] == when and q_i[c] > i)))):
            q_j[c + 1], q_ts[c + 1], q_i[c + 1], q_when[c + 1] = q_j[c], q_ts[c], q_i[c], q_when[c]
            c -= 1
        q_j[c + 1], q_ts[c + 1], q_i[c + 1], q_when[c + 1] = j, ts, i, when
    # Per arrival: the boundaries of its events (arrival and start from the next boundary on)
    # and the values they add: the full c / F_j while waiting, start + c / F_j while running.
    k_when, k_start = np.empty(count, np.int64), np.empty(count, np.int64)
    k_run, k_end = np.empty(count, np.int64), np.empty(count, np.int64)
    stage_q, run_c = np.empty(count), np.empty(count)
    ones_i, ones_f = np.ones(count, np.int64), np.ones(count)
    head = 0
    while head < count:  # one destination queue at a time
        j = q_j[head]
        tail = head
        while tail < count and q_j[tail] == j:
            tail += 1
        for a in range(head, tail):
            ts, i, when = q_ts[a], q_i[a], q_when[a]
            stage = exec_s[b, ts, i]
            s = max(when, cpu_free[b, j])
            dropped = _misses_deadline(s, stage, 0.0, due_s[b, ts, i])
            fail_after = ep_exec_clock[b, ts, i] * inv_alpha[j]
            failed = (not dropped) and _fails_during(fail_after, stage)
            if dropped:
                e = s
            elif failed:
                e = s + fail_after
            else:
                e = s + stage
            cpu_free[b, j] = e
            exec_start_s[b, ts, i] = s
            k_when[a], k_start[a] = max(_boundary(when, slot_s), t_now + 1), _boundary(s, slot_s)
            k_run[a], k_end[a] = max(k_start[a], t_now + 1), _boundary(e, slot_s)
            stage_q[a], run_c[a] = stage, s + stage
            _end(b, ts, i, DROP if dropped else (EXEC_FAIL if failed else SUCCESS), e, outcome,
                 end_s, reward, reward_by_decision, slot_s, T)
        if track:  # what the node observes: counts and backlog, waiting then running
            _queue_events(ev_exec_len, b, j, k_when[head:tail], k_end[head:tail], ones_i, ring)
            _queue_events(ev_exec_wait, b, j, k_when[head:tail], k_start[head:tail], ones_i, ring)
            _queue_events(ev_backlog_c, b, j, k_when[head:tail], k_start[head:tail], stage_q[head:tail], ring)
            _queue_events(ev_backlog_c, b, j, k_run[head:tail], k_end[head:tail], run_c[head:tail], ring)
            _queue_events(ev_backlog_k, b, j, k_run[head:tail], k_end[head:tail], ones_f, ring)
        head = tail


@njit(cache=True)
def check_actions(has_task, actions, n, no_task_action):
    """0 when every node with a task chose a destination in 0..n-1 (and, with
    ``no_task_action``, every node without one chose n); 1 when a destination is out of range;
    2 when a node without a task chose something other than n."""
    B = actions.shape[0]
    for b in range(B):
        for i in range(n):
            a = actions[b, i]
            if has_task[b, i]:
                if a < 0 or a >= n:
                    return 1
            elif no_task_action and a != n:
                return 2
    return 0


@njit(cache=True)
def step_slot(t, actions, slot_s, horizon, ring, ep_has, ep_size, ep_cycles, ep_tx_clock, ep_exec_clock,
              capacity_hz, link_rate, inv_alpha, inv_beta, link_free, cpu_free, dest, outcome, end_s,
              tx_start_s, tx_s, exec_arrive_s, pending_arrival_s, exec_start_s, exec_s, due_s, reward,
              reward_by_decision, sums_i, sums_f, ev_i, ev_f, ev_in_flight, in_flight, ev_send_c, send_c,
              ev_send_k, send_k) -> bool:
    """Apply the destinations ``actions`` (B, N) of slot ``t``, settle what happens during it,
    move the observable sums to boundary t + 1, and drain the queues after the last slot.
    ``sums_i`` (2, B, N): exec_len, exec_wait; ``sums_f`` (2, B, N): backlog_c, backlog_k;
    ``ev_*``: their +/- events on the ring of future boundaries. Returns True when the episode
    is over."""
    B, T, n = ep_has.shape
    now = t * slot_s
    last = t == T - 1
    for b in range(B):
        for i in range(n):
            if ep_has[b, t, i]:
                j = actions[b, i]
                dest[b, t, i] = j
                exec_s[b, t, i] = ep_cycles[b, t, i] / capacity_hz[j]
        _send(b, t, now, actions, ep_has, ep_size, ep_tx_clock, link_rate, inv_beta, slot_s, ring, T,
              link_free, outcome, end_s, tx_start_s, tx_s, exec_arrive_s, pending_arrival_s, exec_s,
              due_s, reward, reward_by_decision, ev_in_flight, ev_send_c, ev_send_k)
        _execute_window(b, t, t, horizon, slot_s, ring, T, True, ep_exec_clock, inv_alpha, cpu_free, dest,
                        outcome, end_s, exec_arrive_s, pending_arrival_s, exec_start_s, exec_s, due_s, reward,
                        reward_by_decision, ev_i[:, 0], ev_i[:, 1], ev_f[:, 0], ev_f[:, 1])
    # Move to boundary t + 1: add its events to the sums.
    k = (t + 1) % ring
    sums_i += ev_i[k]
    ev_i[k] = 0
    sums_f += ev_f[k]
    ev_f[k] = 0
    in_flight += ev_in_flight[k]
    ev_in_flight[k] = 0
    send_c += ev_send_c[k]
    ev_send_c[k] = 0
    send_k += ev_send_k[k]
    ev_send_k[k] = 0
    if not last:
        return False
    # After slot T-1 no task arrives: run the queues until every task has an outcome. What
    # nodes observe is no longer read.
    for b in range(B):
        for window in range(T, T + horizon + 2):
            _execute_window(b, window, T, horizon, slot_s, ring, T, False, ep_exec_clock, inv_alpha, cpu_free,
                            dest, outcome, end_s, exec_arrive_s, pending_arrival_s, exec_start_s, exec_s,
                            due_s, reward, reward_by_decision, ev_i[:, 0], ev_i[:, 1], ev_f[:, 0], ev_f[:, 1])
        for ts in range(T):
            for i in range(n):
                if outcome[b, ts, i] == PENDING:
                    raise AssertionError("drain left tasks without an outcome")
    return True


def warm_up() -> None:
    """Compile every compiled loop of the simulator and the observation (or load them from
    numba's cache, next to this module) by running a tiny episode through the vector env. The
    first time in a fresh checkout this takes about 20 s; later processes load the cache in well
    under a second."""
    from o2o.core.network import sample_network
    from o2o.core.scenario import Scenario
    from o2o.sim.env import OffloadVecEnv

    scenario = Scenario(name="warm-up", nodes=2, slots=2)
    env = OffloadVecEnv(scenario, sample_network(scenario, 0))
    _, mask = env.reset([0])
    while not env.engine.done:
        _, mask, *_ = env.step(np.where(mask[..., -1], 2, 0))
