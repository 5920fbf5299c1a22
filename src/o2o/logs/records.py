"""One logged episode as arrays: the record that the simulator and the testbed both write.

An :class:`EpisodeLog` holds everything the task log keeps about one episode of one run (paper
VI-A): the paper's per-task fields (task, destination, status, times) for every node and
slot, EMPTY node-slots included, and what each deciding node saw when it decided, so that the
observation, the action mask, the action's probability and the reward can be rebuilt from the
log alone (:mod:`o2o.logs.transitions`).

Conventions, shared by the simulator and the testbed:

* Arrays are ``(T, N)`` indexed ``[slot t, source node i]`` unless noted; T = slots, N = nodes.
* Times are seconds **since the start of the episode** (slot t starts at ``t * slot_s``);
  durations are seconds. The task arrived at ``t * slot_s``; its absolute deadline is
  ``t * slot_s + deadline_s[t, i]``.
* Where ``has_task[t, i]`` is False (an EMPTY node-slot): ``action = N``, ``dest = -1``,
  ``outcome = EMPTY``, and the task and time fields are unspecified (NaN after a database round
  trip, where they are stored as NULL). Only the observation fields (``exec_len``,
  ``recv_len``, ``peer_overloaded``) matter there.
* Unknown or undefined numbers are NaN: ``action_prob`` of a rule that does not define one,
  the execution waiting time of a task that never reached an execution queue, ...
* ``outcome`` uses the engine's codes (``o2o.sim.engine``): EMPTY, SUCCESS, DROP, EXEC_FAIL,
  TRANS_FAIL; a logged episode has no PENDING task (every task counts).

What a deciding node saw (the observation inputs, paper IV-B), at the slot boundary of its
decision:

* ``exec_len[t, i]``: tasks in node i's execution queue, the running one included;
* ``recv_len[t, i, j]``: tasks in flight from node j to node i (queued at j or on the wire);
* ``peer_overloaded[t, i, j]``: the 1-bit overload flag of node j **as node i saw it**. In the
  simulator every node sees the same flags at a boundary; a testbed node probes its peers at its
  own decision moment, so the flags are kept per row. The flag of i itself is never used (a node
  may always keep its task).

* ``peer_backlog_s[t, i, j]``: the execution backlog in seconds of node j as node i probed it
  at its decision (its own for j = i), and ``send_backlog_s[t, i, j]``: i's own send backlog
  on its link to j (0 at j = i); what observation v2 adds (``o2o.core.decpomdp``), read only
  where node i had a task. NaN where the node did not learn it (a testbed node that probed only
  some peers): such a log rebuilds observation v1 only.

The first three for the boundary after the last slot (``final_*``, shapes ``(N,)``, ``(N, N)``,
``(N, N)``) let the last transition's next observation be rebuilt (no task there, so no
probes).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from o2o.core.episodes import Episodes
from o2o.core.network import Network
from o2o.core.outcomes import EMPTY, PENDING, SUCCESS
from o2o.core.scenario import Scenario
from o2o.sim.engine import Engine
from o2o.sim.rollout import rollout

# The per-(slot, node) arrays of an EpisodeLog with their dtypes; the observation arrays follow.
TASK_FIELDS: dict[str, type] = {
    "has_task": np.bool_,
    "size_bytes": np.float64,     # s, bytes
    "cycles": np.float64,         # c = delta * s (s in bits), CPU cycles
    "deadline_s": np.float64,     # d, relative to arrival
    "action": np.int64,           # the chosen action: 0..N-1 a destination, N = no task
    "action_prob": np.float64,    # probability the scheduler gave that action (NaN: unknown)
    "dest": np.int64,             # destination node j (-1: no task)
    "outcome": np.int8,           # engine outcome code
    "end_s": np.float64,          # when the task's outcome was settled
    "tx_wait_s": np.float64,      # transmission waiting time T^tw (0 for a local task)
    "tx_s": np.float64,           # nominal transmission time T^t = s / r_ij (0 for a local task)
    "exec_wait_s": np.float64,    # execution waiting time T^cw (NaN: never reached the queue)
    "exec_s": np.float64,         # nominal execution time T^c = c / F_j
}
OBSERVED_FIELDS: dict[str, type] = {
    "exec_len": np.int64,         # (T, N)
    "recv_len": np.int64,         # (T, N, N)
    "peer_overloaded": np.bool_,  # (T, N, N)
    "peer_backlog_s": np.float64,  # (T, N, N)
    "send_backlog_s": np.float64,  # (T, N, N)
}


@dataclass
class EpisodeLog:
    """One logged episode; see the module docstring for the conventions of every field."""

    episode_seed: int             # the seed the episode's draws came from
    episode_index: int            # position of the episode in its run, 0, 1, ...
    has_task: np.ndarray          # (T, N) bool
    size_bytes: np.ndarray        # (T, N)
    cycles: np.ndarray            # (T, N)
    deadline_s: np.ndarray        # (T, N)
    action: np.ndarray            # (T, N) int64, N = no task
    action_prob: np.ndarray       # (T, N), NaN unknown
    dest: np.ndarray              # (T, N) int64, -1 = no task
    outcome: np.ndarray           # (T, N) int8 engine codes
    end_s: np.ndarray             # (T, N)
    tx_wait_s: np.ndarray         # (T, N)
    tx_s: np.ndarray              # (T, N)
    exec_wait_s: np.ndarray       # (T, N)
    exec_s: np.ndarray            # (T, N)
    exec_len: np.ndarray          # (T, N) int64
    recv_len: np.ndarray          # (T, N, N) int64, [t, i, j]: in flight from j to i
    peer_overloaded: np.ndarray   # (T, N, N) bool, [t, i, j]: flag of j as seen by i
    final_exec_len: np.ndarray    # (N,) at the boundary after slot T-1
    final_recv_len: np.ndarray    # (N, N)
    final_peer_overloaded: np.ndarray  # (N, N)
    peer_backlog_s: np.ndarray | None = None   # (T, N, N) [t, i, j]: backlog of j as i probed it
    send_backlog_s: np.ndarray | None = None   # (T, N, N) [t, i, j]: i's send backlog to j

    def __post_init__(self):
        # Not known (a writer that does not report them): NaN, so that a rebuild of
        # observation v2 refuses the episode rather than misread it.
        t, n = np.shape(self.has_task)
        for name in ("peer_backlog_s", "send_backlog_s"):
            if getattr(self, name) is None:
                setattr(self, name, np.full((t, n, n), np.nan))

    @property
    def has_probed_backlogs(self) -> bool:
        """Whether every backlog that observation v2 reads (at the node-slots with a task) is
        known."""
        has = np.asarray(self.has_task, dtype=bool)
        return bool(np.isfinite(self.peer_backlog_s[has]).all()
                    and np.isfinite(self.send_backlog_s[has]).all())

    @property
    def slots(self) -> int:
        return int(self.has_task.shape[0])

    @property
    def nodes(self) -> int:
        return int(self.has_task.shape[1])

    @classmethod
    def empty(cls, slots: int, nodes: int, episode_seed: int, episode_index: int) -> "EpisodeLog":
        """A log with no task anywhere, to be filled in row by row (e.g. by the testbed
        controller as task events come in): no-task actions, EMPTY outcomes, NaN numbers,
        empty queues and no overload flag."""
        t, n = slots, nodes
        nan = lambda *shape: np.full(shape, np.nan)  # noqa: E731
        return cls(
            episode_seed=int(episode_seed), episode_index=int(episode_index),
            has_task=np.zeros((t, n), dtype=bool),
            size_bytes=nan(t, n), cycles=nan(t, n), deadline_s=nan(t, n),
            action=np.full((t, n), n, dtype=np.int64), action_prob=nan(t, n),
            dest=np.full((t, n), -1, dtype=np.int64),
            outcome=np.full((t, n), EMPTY, dtype=np.int8),
            end_s=nan(t, n), tx_wait_s=nan(t, n), tx_s=nan(t, n), exec_wait_s=nan(t, n),
            exec_s=nan(t, n),
            exec_len=np.zeros((t, n), dtype=np.int64),
            recv_len=np.zeros((t, n, n), dtype=np.int64),
            peer_overloaded=np.zeros((t, n, n), dtype=bool),
            final_exec_len=np.zeros(n, dtype=np.int64),
            final_recv_len=np.zeros((n, n), dtype=np.int64),
            final_peer_overloaded=np.zeros((n, n), dtype=bool),
        )

    def validate(self) -> None:
        """Raise ValueError if shapes or the EMPTY / task conventions do not hold.

        Checked: every array's shape; no task <=> action N, dest -1, outcome EMPTY; a task has
        an outcome other than EMPTY/PENDING, a destination in 0..N-1 equal to its action, and
        finite size, cycles, deadline and end time. The log store calls this before writing.
        """
        t, n = self.has_task.shape
        expect = {name: (t, n) for name in TASK_FIELDS} | {
            "exec_len": (t, n), "recv_len": (t, n, n), "peer_overloaded": (t, n, n),
            "final_exec_len": (n,), "final_recv_len": (n, n), "final_peer_overloaded": (n, n),
            "peer_backlog_s": (t, n, n), "send_backlog_s": (t, n, n)}
        for name, shape in expect.items():
            got = np.shape(getattr(self, name))
            if got != shape:
                raise ValueError(f"EpisodeLog.{name} has shape {got}, expected {shape}")
        has = np.asarray(self.has_task, dtype=bool)
        idle = ~has
        if np.any(self.action[idle] != n) or np.any(self.dest[idle] != -1) \
                or np.any(self.outcome[idle] != EMPTY):
            raise ValueError(f"EpisodeLog: a node-slot without a task must have action {n}, "
                             "dest -1 and outcome EMPTY")
        if np.any((self.outcome[has] == EMPTY) | (self.outcome[has] == PENDING)):
            raise ValueError("EpisodeLog: every task must have a final outcome "
                             "(SUCCESS, DROP, EXEC_FAIL or TRANS_FAIL)")
        if np.any((self.dest[has] < 0) | (self.dest[has] >= n)) or np.any(self.dest[has] != self.action[has]):
            raise ValueError(f"EpisodeLog: a task's destination must equal its action and lie in 0..{n - 1}")
        for name in ("size_bytes", "cycles", "deadline_s", "end_s"):
            if not np.all(np.isfinite(getattr(self, name)[has])):
                raise ValueError(f"EpisodeLog.{name} must be finite for every task")

    @property
    def tasks(self) -> int:
        return int(np.count_nonzero(self.has_task))

    @property
    def successes(self) -> int:
        return int(np.count_nonzero(self.outcome == SUCCESS))

    @property
    def success_rate(self) -> float:
        """success / tasks (paper eq. 9); 0 for an episode without tasks, as the engine does."""
        return self.successes / max(self.tasks, 1)

    def equals(self, other: "EpisodeLog") -> bool:
        """Exact equality of every field (NaN equal to NaN), task fields compared only where
        there is a task (they are unspecified elsewhere)."""
        if (self.episode_seed, self.episode_index) != (other.episode_seed, other.episode_index):
            return False
        if self.has_task.shape != other.has_task.shape or not np.array_equal(self.has_task, other.has_task):
            return False
        has = self.has_task
        for f in fields(self):
            if f.name in ("episode_seed", "episode_index", "has_task"):
                continue
            a, b = np.asarray(getattr(self, f.name)), np.asarray(getattr(other, f.name))
            if f.name in TASK_FIELDS and f.name not in ("action", "dest", "outcome"):
                a, b = a[has], b[has]
            if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                return False
        return True


class BoundarySnapshots:
    """``on_step`` callback for :func:`o2o.sim.rollout.rollout` that records what every node saw
    at each slot boundary, before the decisions of that slot are applied."""

    def __init__(self, batch: int, slots: int, nodes: int):
        b, t, n = batch, slots, nodes
        self.exec_len = np.zeros((b, t, n), dtype=np.int64)
        self.recv_len = np.zeros((b, t, n, n), dtype=np.int64)
        self.overloaded = np.zeros((b, t, n), dtype=bool)  # every node sees the same flags
        self.exec_backlog_s = np.zeros((b, t, n))          # ... and the same backlogs
        self.send_backlog_s = np.zeros((b, t, n, n))

    def __call__(self, engine: Engine, actions: np.ndarray, probs: np.ndarray) -> None:
        state = engine.node_state()
        self.exec_len[:, engine.t] = state.exec_len
        # in_flight is receiver-major, [b, j, i] = from i to j: row i of node i is its recv_len.
        self.recv_len[:, engine.t] = state.in_flight
        self.overloaded[:, engine.t] = state.overloaded
        self.exec_backlog_s[:, engine.t] = state.exec_backlog_s
        self.send_backlog_s[:, engine.t] = state.send_backlog_s


def episode_logs_from_rollout(
    scenario: Scenario,
    network: Network,
    episodes: Episodes,
    scheduler,
    first_index: int = 0,
    on_step: Callable[[Engine, np.ndarray, np.ndarray], None] | None = None,
) -> list[EpisodeLog]:
    """Run ``scheduler`` on the batch ``episodes`` (via :func:`o2o.sim.rollout.rollout`) and return
    one :class:`EpisodeLog` per episode, with ``episode_index = first_index + k``.

    ``on_step(engine, actions, probs)`` is called before each step, after the snapshot is taken
    (e.g. to advance a progress bar, or to raise in a test of interrupt safety).
    """
    n_batch, n_slots, n_nodes = episodes.has_task.shape
    snapshots = BoundarySnapshots(n_batch, n_slots, n_nodes)

    def record(engine, actions, probs):
        snapshots(engine, actions, probs)
        if on_step is not None:
            on_step(engine, actions, probs)

    result = rollout(scenario, network, episodes, scheduler, on_step=record)
    e = result.engine
    # After the last step the engine stands at the boundary after slot T-1 and its observable
    # sums are no longer changed by the drain: that is the final observation's state.
    final = e.node_state()
    final_overloaded = np.asarray(final.overloaded)
    has = episodes.has_task
    local = e.dest == np.arange(n_nodes)[None, None, :]
    tx_wait_s = np.where(local, 0.0, e.tx_start_s - e.arrive_s)
    exec_wait_s = e.exec_start_s - e.exec_arrive_s
    logs = []
    for b in range(n_batch):
        task = lambda a: np.where(has[b], a[b], np.nan)  # noqa: E731
        logs.append(EpisodeLog(
            episode_seed=int(episodes.seeds[b]),
            episode_index=first_index + b,
            has_task=has[b].copy(),
            size_bytes=task(episodes.size_bytes),
            cycles=task(episodes.cycles),
            deadline_s=task(episodes.deadline_s),
            action=np.where(has[b], result.actions[b], n_nodes).astype(np.int64),
            action_prob=task(result.action_prob),
            dest=e.dest[b].copy(),
            outcome=e.outcome[b].copy(),
            end_s=task(e.end_s),
            tx_wait_s=task(tx_wait_s),
            tx_s=task(e.tx_s),
            exec_wait_s=task(exec_wait_s),
            exec_s=task(e.exec_s),
            exec_len=snapshots.exec_len[b].copy(),
            recv_len=snapshots.recv_len[b].copy(),
            # Every node sees the same flags in the simulator: broadcast over the observer i.
            peer_overloaded=np.repeat(snapshots.overloaded[b][:, None, :], n_nodes, axis=1),
            final_exec_len=np.asarray(final.exec_len[b], dtype=np.int64).copy(),
            final_recv_len=np.asarray(final.in_flight[b], dtype=np.int64).copy(),
            final_peer_overloaded=np.repeat(final_overloaded[b][None, :], n_nodes, axis=0),
            peer_backlog_s=np.repeat(snapshots.exec_backlog_s[b][:, None, :], n_nodes, axis=1),
            send_backlog_s=snapshots.send_backlog_s[b].copy(),
        ))
    return logs
