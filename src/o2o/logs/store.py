"""Writing and reading task logs in a SQL database (SQLite file by default, PostgreSQL by URL).

Opening, and what it refuses, is ``o2o.logs.db``; the row codec is ``o2o.logs.rows``.

Writing is batched and atomic per call: :meth:`RunWriter.write_episodes` inserts the episodes'
rows (one per node per slot) with bulk ``executemany`` inserts inside one transaction, so an
interrupt or a crash leaves either whole episodes or nothing of them. A run is marked
``running`` when it starts, ``completed`` when its writer closes normally and ``interrupted``
when the writer's block is left by an exception (Ctrl-C included). A process killed outright
(SIGKILL, power loss) cannot mark its run; it stays ``running`` with its finished episodes.

Typical use, for the simulator (``o2o collect``) or the testbed controller::

    store = LogStore.open("runs/ratc.db", create=True)
    with store.start_run(scenario, network, "ratc", network_seed=0) as run:
        run.write_episodes(logs)          # a list of EpisodeLog, any number of times
    for log in store.read_episodes(run.run_id): ...
"""

from __future__ import annotations

import json
import struct
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import URL, Engine

from o2o.core.decpomdp import OBS_LAYOUT_VERSION
from o2o.core.errors import UserError
from o2o.core.metrics import success_rate
from o2o.core.network import Network
from o2o.core.outcomes import DROP, EMPTY, EXEC_FAIL, SUCCESS, TRANS_FAIL
from o2o.core.scenario import Scenario, ScenarioError, scenario_from_dict
from o2o.logs import schema as S
from o2o.logs.db import open_task_log, safe_url, sigint_deferred
from o2o.logs.records import EpisodeLog
from o2o.logs.rows import (
    end_state_rows,
    episode_from_columns,
    insert_tasks,
    task_columns,
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class RunInfo:
    """One row of ``runs``."""

    id: int
    source: str
    scheduler: str
    policy_version: str | None
    phase: str
    scenario_name: str
    config: dict
    network_seed: int | None
    nodes: int
    slots: int
    slot_s: float
    obs_layout: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    note: str | None

    @property
    def scenario(self) -> Scenario:
        try:
            return scenario_from_dict(self.config)
        except ScenarioError as exc:
            raise UserError(f"run {self.id}: its stored scenario is not valid here ({exc})") from None


@dataclass(frozen=True)
class EpisodeCounts:
    """Per-episode outcome counts of one run, arrays (E,) in episode-index order."""

    episode_ids: np.ndarray
    episode_index: np.ndarray
    episode_seed: np.ndarray
    tasks: np.ndarray
    success: np.ndarray
    drop: np.ndarray
    exec_fail: np.ndarray
    trans_fail: np.ndarray

    @property
    def success_rate(self) -> np.ndarray:
        """Per episode, success / tasks (paper eq. 9), computed as the simulator does."""
        return success_rate(self.success, self.tasks)


# ---------------------------------------------------------------------------------- the store
class LogStore:
    """A task-log database, opened and checked. Use :meth:`open`."""

    def __init__(self, engine: Engine, url: URL):
        self.engine = engine
        self.url = url

    # -- opening
    @classmethod
    def open(cls, db: str | Path, create: bool = False, read_only: bool = False) -> "LogStore":
        """Open the task log at ``db`` (a path or URL) after checking its schema
        (``o2o.logs.db.open_task_log``: what is refused, what ``create`` does, and how
        ``read_only`` reads a log on read-only storage)."""
        engine, url = open_task_log(db, create, read_only)
        return cls(engine, url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "LogStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing
    def start_run(self, scenario: Scenario, network: Network, scheduler: str, *,
                  source: str = "sim", phase: str = "heuristic", network_seed: int | None = None,
                  policy_version: str | None = None, note: str | None = None) -> "RunWriter":
        """Insert a run (status ``running``) with its network; returns its writer.

        Use the writer as a context manager: a normal exit marks the run completed, an
        exception (KeyboardInterrupt included) marks it interrupted and propagates."""
        if source not in S.SOURCES:
            raise ValueError(f"source must be one of {S.SOURCES}, got {source!r}")
        if network.n != scenario.nodes:
            raise ValueError(f"network has {network.n} nodes but the scenario has {scenario.nodes}")
        with self.engine.begin() as conn:
            run_id = _insert_one(conn, S.runs, {
                "source": source, "scheduler": scheduler, "policy_version": policy_version,
                "phase": phase, "scenario_name": scenario.name,
                "config_json": json.dumps(scenario.model_dump(mode="json"), sort_keys=True),
                "network_seed": None if network_seed is None else int(network_seed),
                "nodes": scenario.nodes, "slots": scenario.slots, "slot_s": scenario.slot_s,
                "obs_layout": OBS_LAYOUT_VERSION, "status": "running", "started_at": _now(),
                "ended_at": None, "note": note,
            })
            n = network.n
            conn.execute(insert(S.nodes), [{
                "run_id": run_id, "node": i, "cores": int(network.cores[i]),
                "capacity_hz": float(network.capacity_hz[i]),
                "node_fail_rate": float(network.node_fail_rate[i]),
                "arrival_prob": float(network.arrival_prob[i]),
                "overload_threshold": float(network.overload_threshold[i]),
            } for i in range(n)])
            conn.execute(insert(S.links), [{
                "run_id": run_id, "src": i, "dst": j,
                "rate_Bps": float(network.link_rate_Bps[i, j]),
                "fail_rate": float(network.link_fail_rate[i, j]),
            } for i in range(n) for j in range(n)])
        return RunWriter(self, run_id, scenario.slots, n)

    def mark_run(self, run_id: int, status: str) -> None:
        """Set a run's status and end time (``completed`` or ``interrupted``)."""
        if status not in S.RUN_STATUSES:
            raise ValueError(f"status must be one of {S.RUN_STATUSES}, got {status!r}")
        with self.engine.begin() as conn:
            conn.execute(update(S.runs).where(S.runs.c.id == run_id).values(
                status=status, ended_at=None if status == "running" else _now()))

    def delete_run(self, run_id: int) -> None:
        """Remove a run and everything logged for it (used by the benchmark to clean up)."""
        with self.engine.begin() as conn:
            episode_ids = select(S.episodes.c.id).where(S.episodes.c.run_id == run_id)
            # Children first, so this does not depend on the backend's ON DELETE CASCADE.
            conn.execute(S.tasks.delete().where(S.tasks.c.episode_id.in_(episode_ids)))
            conn.execute(S.episode_end_state.delete()
                         .where(S.episode_end_state.c.episode_id.in_(episode_ids)))
            conn.execute(S.episodes.delete().where(S.episodes.c.run_id == run_id))
            conn.execute(S.links.delete().where(S.links.c.run_id == run_id))
            conn.execute(S.nodes.delete().where(S.nodes.c.run_id == run_id))
            conn.execute(S.runs.delete().where(S.runs.c.id == run_id))

    # -- reading
    def runs(self) -> list[RunInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(S.runs).order_by(S.runs.c.id)).mappings().all()
        return [_run_info(r) for r in rows]

    def run(self, run_id: int) -> RunInfo:
        with self.engine.connect() as conn:
            row = conn.execute(select(S.runs).where(S.runs.c.id == run_id)).mappings().first()
        if row is None:
            raise UserError(f"run {run_id} is not in {safe_url(self.url)}")
        return _run_info(row)

    def network(self, run_id: int) -> Network:
        """The run's network, rebuilt exactly from the ``nodes`` and ``links`` tables."""
        info = self.run(run_id)
        n = info.nodes
        with self.engine.connect() as conn:
            node_rows = conn.execute(select(S.nodes).where(S.nodes.c.run_id == run_id)
                                     .order_by(S.nodes.c.node)).mappings().all()
            link_rows = conn.execute(select(S.links).where(S.links.c.run_id == run_id)
                                     .order_by(S.links.c.src, S.links.c.dst)).mappings().all()
        if len(node_rows) != n or len(link_rows) != n * n:
            raise UserError(f"run {run_id}: its network is incomplete in the log "
                            f"({len(node_rows)} nodes, {len(link_rows)} links for N = {n})")
        col = lambda rows, k: [r[k] for r in rows]  # noqa: E731
        return Network.from_dict({
            "cores": col(node_rows, "cores"), "capacity_hz": col(node_rows, "capacity_hz"),
            "node_fail_rate": col(node_rows, "node_fail_rate"),
            "arrival_prob": col(node_rows, "arrival_prob"),
            "overload_threshold": col(node_rows, "overload_threshold"),
            "link_rate_Bps": np.reshape(col(link_rows, "rate_Bps"), (n, n)),
            "link_fail_rate": np.reshape(col(link_rows, "fail_rate"), (n, n)),
        })

    def episode_ids(self, run_id: int) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(S.episodes.c.id).where(S.episodes.c.run_id == run_id)
                                     .order_by(S.episodes.c.episode_index)).scalars())

    def read_episodes(self, run_id: int, batch: int = 64) -> Iterator[tuple[int, EpisodeLog]]:
        """Yield ``(episode_id, EpisodeLog)`` for every episode of the run, in index order,
        reading ``batch`` episodes per query."""
        info = self.run(run_id)
        ids = self.episode_ids(run_id)
        for lo in range(0, len(ids), batch):
            yield from self._read_batch(ids[lo:lo + batch], info.slots, info.nodes)

    def _read_batch(self, ids: Sequence[int], slots: int, n: int) -> Iterator[tuple[int, EpisodeLog]]:
        t = S.tasks.c
        cols = [t.episode_id, t.slot, t.source, t.status, t.destination, t.action,
                t.action_prob, t.size_bytes, t.cycles, t.deadline_s, t.tx_wait_s, t.tx_s,
                t.exec_wait_s, t.exec_s, t.end_s, t.exec_len, t.recv_len, t.peer_overloaded,
                t.peer_backlog_s, t.send_backlog_s]
        with self.engine.connect() as conn:
            heads = conn.execute(select(S.episodes.c.id, S.episodes.c.episode_index,
                                        S.episodes.c.episode_seed)
                                 .where(S.episodes.c.id.in_(ids))).all()
            rows = conn.execute(select(*cols).where(t.episode_id.in_(ids))
                                .order_by(t.episode_id, t.slot, t.source)).all()
            ends = conn.execute(select(S.episode_end_state)
                                .where(S.episode_end_state.c.episode_id.in_(ids))
                                .order_by(S.episode_end_state.c.episode_id,
                                          S.episode_end_state.c.node)).all()
        head = {h.id: h for h in heads}
        per_episode = slots * n
        if len(rows) != per_episode * len(ids) or len(ends) != n * len(ids):
            raise UserError(f"episodes {ids[0]}..{ids[-1]}: the log has {len(rows)} task rows "
                            f"and {len(ends)} end rows, expected {per_episode} and {n} per episode")
        columns = list(zip(*rows))
        by_name = dict(zip((c.name for c in cols), columns))
        end_columns = dict(zip([c.name for c in S.episode_end_state.columns], zip(*ends)))
        position = {episode_id: k for k, episode_id in enumerate(sorted(ids))}
        for episode_id in ids:  # in the caller's order; rows came sorted by episode id
            k = position[episode_id]
            rs = slice(k * per_episode, (k + 1) * per_episode)
            es = slice(k * n, (k + 1) * n)
            if set(by_name["episode_id"][rs]) != {episode_id} or set(end_columns["episode_id"][es]) != {episode_id}:
                raise UserError(f"episode {episode_id}: its rows in the log are incomplete")
            yield episode_id, episode_from_columns(head[episode_id], by_name, rs, end_columns, es, slots, n)

    def episode_counts(self, run_id: int) -> EpisodeCounts:
        """Per-episode counts of outcomes, read with one aggregate query."""
        with self.engine.connect() as conn:
            heads = conn.execute(select(S.episodes.c.id, S.episodes.c.episode_index,
                                        S.episodes.c.episode_seed)
                                 .where(S.episodes.c.run_id == run_id)
                                 .order_by(S.episodes.c.episode_index)).all()
            counts = conn.execute(
                select(S.tasks.c.episode_id, S.tasks.c.status, func.count())
                .join(S.episodes, S.episodes.c.id == S.tasks.c.episode_id)
                .where(S.episodes.c.run_id == run_id)
                .group_by(S.tasks.c.episode_id, S.tasks.c.status)).all()
        pos = {h.id: k for k, h in enumerate(heads)}
        table = np.zeros((len(heads), 6), dtype=np.int64)
        for episode_id, status, count in counts:
            table[pos[episode_id], status] = count
        return EpisodeCounts(
            episode_ids=np.array([h.id for h in heads], dtype=np.int64),
            episode_index=np.array([h.episode_index for h in heads], dtype=np.int64),
            episode_seed=np.array([h.episode_seed for h in heads], dtype=np.int64),
            tasks=table.sum(axis=1) - table[:, EMPTY], success=table[:, SUCCESS],
            drop=table[:, DROP], exec_fail=table[:, EXEC_FAIL], trans_fail=table[:, TRANS_FAIL])

    def summary(self) -> list[dict]:
        """Per run: its description, episodes and outcome counts, and the success rate as the
        simulator reports it (mean over episodes of success / tasks) with its std."""
        out = []
        for info in self.runs():
            c = self.episode_counts(info.id)
            rate = c.success_rate
            out.append({
                "run": info.id, "source": info.source, "scheduler": info.scheduler,
                "policy_version": info.policy_version, "phase": info.phase,
                "scenario": info.scenario_name, "network_seed": info.network_seed,
                "nodes": info.nodes, "slots": info.slots, "status": info.status,
                "started_at": info.started_at.isoformat() if info.started_at else None,
                "ended_at": info.ended_at.isoformat() if info.ended_at else None,
                "episodes": int(rate.size),
                "tasks": int(c.tasks.sum()), "success": int(c.success.sum()),
                "drop": int(c.drop.sum()), "exec_fail": int(c.exec_fail.sum()),
                "trans_fail": int(c.trans_fail.sum()),
                "success_rate": float(rate.mean()) if rate.size else None,
                "success_rate_std": float(rate.std(ddof=1)) if rate.size > 1 else 0.0,
            })
        return out


@contextmanager
def damaged_log_guard(where: str) -> Iterator[None]:
    """Reading a task log whose rows are not what o2o writes (a value of the wrong type, out
    of its range, a row missing: edited by hand, or written by something else) refuses it in
    one line instead of failing half-way with a traceback."""
    try:
        yield
    except UserError:
        raise
    except (TypeError, ValueError, IndexError, KeyError, OverflowError, AttributeError,
            struct.error) as exc:
        what = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UserError(f"task log {where} is damaged: a row holds what o2o does not write "
                        f"({type(exc).__name__}: {what}); nothing was written") from None


def _insert_one(conn, table, row: dict) -> int:
    """Insert one row and return its id.

    Not ``INSERT … RETURNING`` fetched in Python: on SQLite that statement stays in progress
    until its row is read, so a Ctrl-C landing in the fetch left a live statement on the
    connection, and the next commit on it (marking the run interrupted) failed with "SQL
    statements in progress". The primary key comes back from the driver call itself (SQLite's
    last row id; PostgreSQL's RETURNING, read whole by the driver)."""
    return int(conn.execute(insert(table), row).inserted_primary_key[0])


def _utc(when: datetime | None) -> datetime | None:
    # SQLite keeps no time zone; every time was written in UTC.
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when


def _run_info(r) -> RunInfo:
    return RunInfo(
        id=r["id"], source=r["source"], scheduler=r["scheduler"],
        policy_version=r["policy_version"], phase=r["phase"], scenario_name=r["scenario_name"],
        config=json.loads(r["config_json"]), network_seed=r["network_seed"], nodes=r["nodes"],
        slots=r["slots"], slot_s=r["slot_s"], obs_layout=r["obs_layout"], status=r["status"],
        started_at=_utc(r["started_at"]), ended_at=_utc(r["ended_at"]), note=r["note"])


# ---------------------------------------------------------------------------------- the writer
class RunWriter:
    """Writes the episodes of one run; a context manager that marks the run's end status."""

    def __init__(self, store: LogStore, run_id: int, slots: int, nodes: int):
        self.store = store
        self.run_id = run_id
        self.slots = slots
        self.nodes = nodes
        self.episodes_written = 0
        self.rows_written = 0
        self.status = "running"

    def write_episodes(self, logs: Iterable[EpisodeLog]) -> int:
        """Insert whole episodes in one transaction: all of them or, on any error or
        interrupt, none. Returns the number of task rows written."""
        logs = list(logs)
        if self.status != "running":
            raise RuntimeError(f"run {self.run_id} is already {self.status}")
        for log in logs:
            if log.has_task.shape != (self.slots, self.nodes):
                raise ValueError(f"episode {log.episode_index} has shape {log.has_task.shape}; "
                                 f"the run has T = {self.slots}, N = {self.nodes}")
            log.validate()
        rows = 0
        with ExitStack() as after_the_inserts:
            with self.store.engine.begin() as conn:
                try:
                    for log in logs:
                        episode_id = _insert_one(conn, S.episodes, {
                            "run_id": self.run_id, "episode_index": int(log.episode_index),
                            "episode_seed": int(log.episode_seed), "written_at": _now(),
                        })
                        rows += insert_tasks(conn, task_columns(episode_id, log))
                        conn.execute(insert(S.episode_end_state), end_state_rows(episode_id, log))
                except BaseException as exc:
                    # Ctrl-C inside a PostgreSQL command (a COPY half sent): the connection is in
                    # the middle of that command and cannot roll back, so close it instead; the
                    # server then drops the transaction, and the episodes are written all or none.
                    # A SQLite call is whole when it returns (``o2o.logs.db``): roll back as usual.
                    interrupted = not isinstance(exc, Exception) or isinstance(exc.__context__, KeyboardInterrupt)
                    if interrupted and conn.dialect.name != "sqlite":
                        conn.invalidate(exc)
                        if isinstance(exc, Exception):  # the driver's error about the interrupted command
                            raise KeyboardInterrupt from exc
                    raise
                # Every row is in: a Ctrl-C now waits until the commit and the connection's return
                # to the pool are done (one landing in the pool's reset of the connection was
                # logged by SQLAlchemy with a traceback), and then interrupts as usual.
                after_the_inserts.enter_context(sigint_deferred())
            self.episodes_written += len(logs)
            self.rows_written += rows
        return rows

    def finish(self, status: str = "completed") -> None:
        with sigint_deferred():  # a second Ctrl-C must not leave the run marked running
            self.store.mark_run(self.run_id, status)
        self.status = status

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.status != "running":
            return
        self.finish("completed" if exc_type is None else "interrupted")
