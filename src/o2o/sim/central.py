"""The centralized full-information references (yardsticks the paper lacks): two greedy rules and
the planner ``central``.

Each sees every queue and every task in flight in the simulator, and places the tasks of a slot
one at a time, each with the exact predicted completion on every candidate node given everything
already in the system (including the tasks placed before it in the same slot). A node is
feasible when the task would finish there by its deadline without making a task already placed
there miss its own (FIFO order is by arrival, so a later task can overtake one still on the
wire). Among the feasible nodes a rule takes the best score

    rel_ij - weight * (finish_ij - now) / d_i

(rel_ij: the task's reliability on j, paper eqs. 3-5; finish_ij: its predicted completion), and
where no node is feasible, the one where the task would finish earliest:

* ``central-reliable`` (weight 0, node index order): the most reliable feasible node;
* ``central-earliest`` (weight inf, node index order): the feasible node where the task
  finishes earliest;
* ``central``: a planner over the grid FINISH_WEIGHTS x ORDERS of such rules (node index order,
  or the slot's largest task first: it has the fewest nodes that can take it in time). It knows
  the episode's arrivals in advance (a clairvoyant yardstick), and runs each episode with the
  rule of the grid that has the most expected successes on that episode's own tasks. The grid
  holds both greedy rules; neither is best everywhere: a short queue leaves room for the tasks
  still to come, a reliable node keeps this one.

They know the failure clocks of the tasks already in the system, as the simulator does, but not
those of the task they place: for that one they use rel_ij (and ``central`` scores its rules on
failure-free or redrawn clocks). So they never anticipate a task's own failure, and the bounds of
``o2o.sim.bound`` hold for them (docs/yardsticks.md).

To tell what their lead is made of, ``GreedyCentral``'s switches ``sees_slot`` and ``sees_wire``
take away the other placements of the slot and the peers' tasks on the wire, and
``InformedSlackReliable`` is the decentralized rule ``slack-reliable`` drawing over the exact
completion times (``scripts/coordination_value.py``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from o2o.core.episodes import Episodes
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.core.outcomes import SUCCESS
from o2o.schedulers.base import sample_inverse_cdf
from o2o.schedulers.heuristics import SlackReliable, check_params, slack_reliable_weights
from o2o.sim.engine import Engine, settle_stage

#: The rules ``central`` chooses from: finish weights (0: most reliable; inf: earliest finish)
#: and placement orders (False: node index order; True: largest task first).
FINISH_WEIGHTS = (0.0, 0.1, 0.3, 1.0, math.inf)
ORDERS = (False, True)
#: Episodes per rollout when ``central`` scores its rules (rules x episodes x draws in all).
RULES_PER_BATCH_EPISODES = 1024
#: Expected tasks per episode within which ``central`` counts two rules as tied.
TIE_TASKS = 0.1


class GreedyCentral:
    """Engine-level scheduler: ``decide(engine) -> (actions (B, N), probs (B, N))``. Among the
    feasible nodes it takes the best ``rel - finish_weight * (finish - now) / d``.

    ``finish_weight`` and ``largest_first`` are scalars, or arrays (B,) with one value per
    episode of the batch (the tuning runs every rule of its grid as one batch).

    Two switches take information away, to measure what each piece is worth (the default keeps
    both, the centralized rules above):

    * ``sees_slot=False``: each task of a slot is placed as if it were the slot's only one, from
      the state before the slot; no placement sees the others of the same slot (what a node
      deciding alone cannot know: what its peers send at the same time);
    * ``sees_wire=False``: a placement by node i sees, of the tasks still on the wire to an
      execution queue, only i's own (a node knows its own sends, not its peers').

    With both off, each node places alone from exact knowledge of every execution queue; it is
    still told more than a probing node (the failure clocks of the tasks in the queues)."""

    def __init__(self, finish_weight, name: str | None = None, largest_first=False,
                 sees_slot: bool = True, sees_wire: bool = True):
        weight = np.asarray(finish_weight, dtype=np.float64)
        if not np.all(weight >= 0):
            raise ValueError(f"finish_weight must be >= 0, got {finish_weight}")
        self.finish_weight = weight
        self.largest_first = np.asarray(largest_first, dtype=bool)
        self.sees_slot = sees_slot
        self.sees_wire = sees_wire
        self.name = name or f"central(weight={finish_weight}, largest_first={largest_first})"

    def _choose(self, feasible, rel, finish, reach, now, deadline_s, weight, engine=None, i=None):
        """(B,) the node each episode's task goes to (``weight``: (B,) finish weights; ``i``
        (B,): the node placing it, in ``engine``'s slot)."""
        earliest_feasible = np.argmin(np.where(feasible, finish, np.inf), axis=1)
        wait = np.where(feasible, finish, now) - now
        score = rel - np.where(np.isinf(weight), 0.0, weight)[:, None] * wait / deadline_s[:, None]
        best = np.where(np.isinf(weight), earliest_feasible,
                        np.argmax(np.where(feasible, score, -np.inf), axis=1))
        earliest = np.argmin(np.where(np.isfinite(finish), finish, reach + 1e9), axis=1)
        return np.where(feasible.any(axis=1), best, earliest)

    def _placement_order(self, e: Engine) -> np.ndarray:
        """(N, B): the order in which each episode places its slot's tasks: node index order, or
        the largest task (most cycles) first, so that the tasks with the fewest nodes able to
        take them in time choose first."""
        index = np.broadcast_to(np.arange(e.N)[None, :], (e.B, e.N))
        largest = np.argsort(-e.ep.cycles[:, e.t, :], axis=1, kind="stable")
        return np.where(np.broadcast_to(self.largest_first, (e.B,))[:, None], largest, index).T

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
        deadline = e.ep.deadline_s[:, t, :]
        weight = np.broadcast_to(self.finish_weight, (B,))
        for i in self._placement_order(e):  # (B,): the node whose task each episode places next
            rows = has[bs, i]
            if not rows.any():
                continue
            # Send queue i -> j: starts when the link is free, dropped if it cannot make it.
            send_start = np.maximum(now, e.link_free[bs, i, :])
            send_start[bs, i] = now
            reach = send_start + tx_new[bs, i, :]                                      # (B, j)
            send_dropped = reach + exec_new[bs, i, :] > due[bs, i, None]
            seen = (arr, src, tt) if self.sees_wire else self._own_sends(arr, src, tt, i)
            finish, harms = self._finish_at(e, *seen, reach, i, exec_new[bs, i, :])
            finish = np.where(send_dropped, np.inf, finish)
            feasible = (finish <= due[bs, i, None]) & ~harms
            choice = self._choose(feasible, rel[bs, i, :], finish, reach, now, deadline[bs, i], weight,
                                  engine=e, i=i)
            actions[bs[rows], i[rows]] = choice[rows]
            if not self.sees_slot:
                continue
            # The placed task joins the pending arrivals seen by the next nodes, exactly as the
            # engine will settle its transmission.
            j = choice
            tx = tx_new[bs, i, j]
            remote = j != i
            start, end, dropped, failed = settle_stage(
                now, np.where(remote, e.link_free[bs, i, j], now), tx, exec_new[bs, i, j], due[bs, i],
                np.where(remote, e.ep.tx_fail_clock[bs, t, i] * e.inv_beta[i, j], np.inf))
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
    def _own_sends(arr, src, tt, i):
        """The pending arrivals that node i (B,) knows of: those it sent itself, still in
        (time, source) order, the others moved behind them as empty entries."""
        mine = src == i[:, None, None]
        order = np.argsort(~mine, axis=-1, kind="stable")
        kept = np.take_along_axis(mine, order, -1)

        def pick(a, empty):
            return np.where(kept, np.take_along_axis(a, order, -1), empty)

        return pick(arr, np.inf), pick(src, -1), pick(tt, -1)

    @staticmethod
    def _append(arr, src, tt, rows, j, when, i, t):
        """Add one arrival per episode (where ``rows``) at node j; keep (time, source) order."""
        B = arr.shape[0]
        bs = np.arange(B)[rows]
        jj = j[rows]
        slot = np.argmax(~np.isfinite(arr[bs, jj]), axis=1)  # first free position
        arr[bs, jj, slot] = when[rows]
        src[bs, jj, slot] = i[rows]
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
            behind = valid & ~((a < reach) | ((a == reach) & (src[:, :, k] < i[:, None])))
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


class InformedSlackReliable(GreedyCentral):
    """``slack-reliable``'s draw (o2o.schedulers.heuristics.SlackReliable) over what a node cannot
    know: the exact completion of the task on every node (every execution queue with the failure
    clocks of its tasks, the tasks on the wire to it) instead of the probed estimate, and a node
    is feasible only where the task makes its deadline without making a queued task miss its own
    (instead of the overload flag). With ``sees_slot=False`` (the default here) every task of a
    slot is placed from the state before the slot, as a node deciding alone does: a yardstick for
    what more information is worth to a rule that decides without knowing its peers' choices.

    Keep the task local when its own completion is within ``local_margin`` of d; otherwise draw
    among the feasible nodes finishing within ``peer_margin`` of d, with probability
    proportional to ``rel ** rel_power * (slack / d) ** slack_power`` (slack: d minus the time to
    completion), by inverse CDF with the episode's uniform of the rule (``sched_u[..., 0]``, the
    rule's own); where none is, the earliest completion. Parameters are scalars or arrays (B,),
    one value per episode of a batch."""

    def __init__(self, local_margin=0.7, peer_margin=0.9, rel_power=1.0, slack_power=1.0,
                 name: str = "informed slack-reliable", sees_slot: bool = False, sees_wire: bool = True):
        super().__init__(math.inf, name, sees_slot=sees_slot, sees_wire=sees_wire)
        self.params = {k: np.asarray(v, dtype=np.float64) for k, v in
                       {"local_margin": local_margin, "peer_margin": peer_margin,
                        "rel_power": rel_power, "slack_power": slack_power}.items()}
        for key, values in self.params.items():   # the rule's own check, on each distinct value
            for value in np.unique(values):
                check_params(name, {key: float(value)}, SlackReliable.BOUNDS)

    def _choose(self, feasible, rel, finish, reach, now, deadline_s, weight, engine=None, i=None):
        earliest = super()._choose(feasible, rel, finish, reach, now, deadline_s, weight)
        B = finish.shape[0]
        p = {k: np.broadcast_to(v, (B,))[:, None] for k, v in self.params.items()}
        d = deadline_s[:, None]
        wait = finish - now   # inf where the task cannot reach the node in time
        w = slack_reliable_weights(np.where(feasible, wait, 0.0), rel, feasible, d, p["peer_margin"],
                                   p["rel_power"], p["slack_power"])
        total = w.sum(axis=1, keepdims=True)
        probs = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
        bs = np.arange(B)
        drawn = sample_inverse_cdf(probs, engine.ep.sched_u[bs, engine.t, i, 0])
        choice = np.where(total[:, 0] > 0, drawn, earliest)
        local = wait[bs, i] <= p["local_margin"][:, 0] * deadline_s
        return np.where(local, i, choice)


def central_reliable() -> GreedyCentral:
    return GreedyCentral(0.0, "central-reliable")


def central_earliest() -> GreedyCentral:
    return GreedyCentral(math.inf, "central-earliest")


class Central:
    """The planner ``central``: per episode, the greedy rule of the grid FINISH_WEIGHTS x ORDERS
    with the most expected successes on that episode's own tasks.

    It knows the episode's arrivals (a clairvoyant planner: every task, present and future), but
    not the failure clocks. At the start of each episode it runs every rule of the grid on a copy
    of the episode and scores it: by default (``clock_draws=0``) on a failure-free copy, each
    success weighted by the task's reliability on the node it ran on (paper eqs. 3-5), a model
    with no sampling noise; with ``clock_draws=k`` by the mean success rate over k copies whose
    failure clocks are redrawn independently of the real ones (``redraw_clocks``). Rules within
    TIE_TASKS expected tasks of the best count as tied, and the tie goes to the rule listed first
    (the two greedy variants lead the list). The choice never reads a task's own clocks, so the
    bounds of ``o2o.sim.bound`` hold for it. ``chosen`` records how often each rule was taken."""

    name = "central"

    def __init__(self, clock_draws: int = 0, weights=FINISH_WEIGHTS, orders=ORDERS):
        if clock_draws < 0:
            raise ValueError(f"clock_draws must be >= 0, got {clock_draws}")
        self.clock_draws = clock_draws
        # The two greedy variants first: they win the near ties.
        grid = [(float(w), bool(o)) for o in orders for w in weights]
        self.grid = sorted(grid, key=lambda g: (g != (0.0, False), g != (math.inf, False)))
        self._rule: GreedyCentral | None = None
        self._taken = np.zeros(len(self.grid), dtype=np.int64)
        self.chosen: dict[str, object] = {}

    def expected_successes(self, scenario: Scenario, network: Network, episodes: Episodes) -> np.ndarray:
        """(rules, B): each rule's score on each episode, its expected success rate: with
        ``clock_draws`` > 0 the mean over redrawn failure clocks; with 0 the failure-free run's
        successes, each weighted by its reliability on the node it ran on (paper eqs. 3-5)."""
        from o2o.sim.rollout import rollout

        draws = max(self.clock_draws, 1)
        copies = redraw_clocks(episodes, self.clock_draws) if self.clock_draws else dataclasses.replace(
            episodes, tx_fail_clock=np.full_like(episodes.tx_fail_clock, np.inf),
            exec_fail_clock=np.full_like(episodes.exec_fail_clock, np.inf))
        per_rule = copies.batch
        rates = []
        # A few rules per batch, so that memory stays near that of one rollout of the copies.
        step = max(1, RULES_PER_BATCH_EPISODES // max(per_rule, 1))
        for lo in range(0, len(self.grid), step):
            part = self.grid[lo:lo + step]
            batch = Episodes(**{f: np.concatenate([getattr(copies, f)] * len(part))
                                for f in Episodes.__dataclass_fields__})
            rule = GreedyCentral(np.repeat([w for w, _ in part], per_rule), "central grid",
                                 np.repeat([o for _, o in part], per_rule))
            engine = rollout(scenario, network, batch, rule).engine
            if self.clock_draws:
                rate = engine.metrics()["success_rate"]
            else:
                rel = task_reliability(network, batch, engine.dest)
                won = np.where(engine.outcome == SUCCESS, rel, 0.0).sum(axis=(1, 2))
                rate = won / np.maximum(batch.has_task.sum(axis=(1, 2)), 1)
            rates.append(rate.reshape(len(part), episodes.batch, draws).mean(axis=2))
        return np.concatenate(rates)

    def _plan(self, engine: Engine) -> GreedyCentral:
        rates = self.expected_successes(engine.sc, engine.net, engine.ep)
        # Near ties (within TIE_TASKS expected tasks of the best) go to the rule listed first:
        # the score is a model (failure-free queues), and a rule that wins by less than that
        # wins by the model's error, not by its plan.
        tasks = np.maximum(engine.ep.has_task.sum(axis=(1, 2)), 1)
        best = np.argmax(rates * tasks >= (rates * tasks).max(axis=0) - TIE_TASKS, axis=0)
        np.add.at(self._taken, best, 1)
        weights = np.array([self.grid[g][0] for g in best])
        orders = np.array([self.grid[g][1] for g in best])
        self.chosen = {"clock_draws": self.clock_draws, "episodes": int(self._taken.sum()),
                       "rule_taken": {f"weight {w:g}, {'largest first' if o else 'index order'}": int(n)
                                      for (w, o), n in zip(self.grid, self._taken)}}
        return GreedyCentral(weights, "central(per episode)", orders)

    def decide(self, engine: Engine) -> tuple[np.ndarray, np.ndarray]:
        if engine.t == 0 or self._rule is None:
            self._rule = self._plan(engine)
        return self._rule.decide(engine)


def task_reliability(network: Network, episodes: Episodes, dest: np.ndarray) -> np.ndarray:
    """(B, T, N): each task's reliability on its destination ``dest`` (paper eqs. 3-5): no
    failure during its transmission (none when it stays local) nor its execution."""
    n = network.n
    j = np.clip(dest, 0, n - 1)
    i = np.broadcast_to(np.arange(n), dest.shape)
    tx = np.where(j == i, 0.0, episodes.size_bytes / network.link_rate_Bps[i, j])
    return np.exp(-network.link_fail_rate[i, j] * tx - network.node_fail_rate[j] * episodes.cycles / network.capacity_hz[j])


def redraw_clocks(episodes: Episodes, draws: int) -> Episodes:
    """``draws`` copies of every episode (episode-major: copy m of episode b is row b * draws + m)
    with the same tasks and new failure clocks, drawn from (episode seed, m) alone and
    independent of the episode's own clocks."""
    rows = np.repeat(np.arange(episodes.batch), draws)
    copies = episodes.select(rows)
    tx = np.empty_like(copies.tx_fail_clock)
    ex = np.empty_like(copies.exec_fail_clock)
    for r, (seed, m) in enumerate(zip(copies.seeds, np.tile(np.arange(draws), episodes.batch))):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x63656E74, int(m)]))
        tx[r] = rng.exponential(1.0, size=tx.shape[1:])
        ex[r] = rng.exponential(1.0, size=ex.shape[1:])
    return dataclasses.replace(copies, tx_fail_clock=tx, exec_fail_clock=ex)
