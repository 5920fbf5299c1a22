"""Writing and reading task logs in a SQL database (SQLite file by default, PostgreSQL by URL).

Opening is careful, because the user names the database: a path that is not a SQLite file, a
database that holds other tables but no task log, a log of another schema version, a server
that does not answer: each is refused with a :class:`~o2o.core.errors.UserError` that says what is
wrong, before anything is written. Only ``create=True`` (``o2o collect``) creates a new file or
the tables in an empty database.

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
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import create_engine, event, func, insert, inspect, select, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from o2o.core.decpomdp import OBS_LAYOUT_VERSION
from o2o.core.errors import UserError
from o2o.core.network import BITS_PER_BYTE, Network
from o2o.core.outcomes import DROP, EMPTY, EXEC_FAIL, SUCCESS, TRANS_FAIL
from o2o.core.scenario import Scenario, ScenarioError, scenario_from_dict
from o2o.logs import schema as S
from o2o.logs.records import EpisodeLog

SQLITE_HEADER = b"SQLite format 3\x00"


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------------------------- opening
def resolve_url(db: str | Path) -> URL:
    """A SQLAlchemy URL from what the user typed: a file path (SQLite) or a URL.

    ``postgresql://`` and ``postgres://`` mean the installed psycopg 3 driver."""
    text = str(db).strip()
    if not text:
        raise UserError("--db is empty; give a SQLite file path or a database URL")
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser()))
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)  # never echo a password
        raise UserError(f"cannot read database URL {shown!r}: {exc}") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise UserError(f"unsupported database {url.get_backend_name()!r} in {_safe(url)}; use a "
                        "SQLite path or sqlite:///PATH, or postgresql+psycopg://USER:PASS@HOST/DB")
    return url


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def describe_db(db: str | Path) -> str:
    """What to print for a ``--db`` value: the path, or the URL with its password hidden."""
    text = str(db)
    if "://" not in text:
        return text
    try:
        return _safe(make_url(text))
    except (ArgumentError, ValueError):
        return "<unreadable database URL>"


@contextmanager
def _sigint_deferred():
    """Hold back Ctrl-C during a short critical write (marking a run's status), then deliver
    it. Only the main thread can handle signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _check_sqlite_file(path: Path, create: bool) -> None:
    """Refuse, before SQLite touches it, a path that cannot hold a task log."""
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a task-log database file")
    if not path.exists():
        if not create:
            raise UserError(f"no task log at {path}: the file does not exist "
                            "(write one with `o2o collect --db PATH`)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the folder of {path}: {exc.strerror}") from None
        return
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_HEADER))
    # A zero-byte file is an empty SQLite database; anything else must carry the header.
    if head and head != SQLITE_HEADER:
        raise UserError(f"{path} is not a SQLite database (is it the right file?); "
                        "nothing was changed")


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # per connection; writes nothing to the file
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            # WAL (set once, at creation) makes a commit one append; NORMAL sync keeps every
            # committed episode through an application crash, which is what we promise.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
        return engine
    return create_engine(url, connect_args={"connect_timeout": 10}, pool_pre_ping=True)


# ---------------------------------------------------------------------------------- records
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
        return self.success / np.maximum(self.tasks, 1)


# ---------------------------------------------------------------------------------- the store
class LogStore:
    """A task-log database, opened and checked. Use :meth:`open`."""

    def __init__(self, engine: Engine, url: URL):
        self.engine = engine
        self.url = url

    # -- opening
    @classmethod
    def open(cls, db: str | Path, create: bool = False) -> "LogStore":
        """Open the task log at ``db`` (a path or URL) after checking its schema.

        ``create=True`` creates a missing SQLite file or the tables of an empty database; an
        existing log is opened as it is. Raises UserError for a missing file (without
        ``create``), a non-SQLite file, a database with other tables, an unknown schema
        version, or a server that cannot be reached; none of these is modified."""
        url = resolve_url(db)
        path = _sqlite_path(url) if url.get_backend_name() == "sqlite" else None
        if path is not None:
            _check_sqlite_file(path, create)
        try:
            engine = _make_engine(url)
        except (NoSuchModuleError, ArgumentError, ImportError) as exc:
            raise UserError(f"cannot use database {_safe(url)}: {exc}") from None
        store = cls(engine, url)
        try:
            store._check_schema(create)
        except BaseException:
            engine.dispose()
            raise
        return store

    def _check_schema(self, create: bool) -> None:
        where = _safe(self.url)
        try:
            with self.engine.begin() as conn:
                names = set(inspect(conn).get_table_names())
                if not names:
                    if not create:
                        raise UserError(f"{where} holds no task log (it is empty)")
                    S.metadata.create_all(conn)
                    conn.execute(insert(S.schema_info), {"format": S.SCHEMA_FORMAT,
                                                         "version": S.SCHEMA_VERSION})
                    conn.execute(insert(S.task_status), S.STATUS_ROWS)
                    created_sqlite = conn.dialect.name == "sqlite"
                else:
                    created_sqlite = False
                    self._check_existing(conn, names, where)
        except UserError:
            raise
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if self.url.get_backend_name() == "sqlite" and "not a database" in reason:
                raise UserError(f"{where} is not a SQLite database; nothing was changed") from None
            raise UserError(f"cannot open task log {where}: {reason}") from None
        except SQLAlchemyError as exc:
            raise UserError(f"cannot open task log {where}: {exc}") from None
        if created_sqlite:
            # Outside the transaction: WAL is a property of the file, set once at creation.
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")

    @staticmethod
    def _check_existing(conn, names: set[str], where: str) -> None:
        if S.schema_info.name not in names:
            raise UserError(f"{where} is not an o2o task log (it has other tables: "
                            f"{', '.join(sorted(names)[:5])}); nothing was changed")
        rows = conn.execute(select(S.schema_info.c.format, S.schema_info.c.version)).all()
        if len(rows) != 1 or rows[0].format != S.SCHEMA_FORMAT:
            raise UserError(f"{where} has an {S.schema_info.name} table but not of an o2o task log")
        version = rows[0].version
        if version != S.SCHEMA_VERSION:
            raise UserError(f"{where} is a task log of schema version {version}; this o2o reads "
                            f"version {S.SCHEMA_VERSION} only")
        missing = S.TABLE_NAMES - names
        if missing:
            raise UserError(f"{where} is a damaged task log: tables {', '.join(sorted(missing))} "
                            "are missing")

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
            run_id = conn.execute(insert(S.runs).returning(S.runs.c.id), {
                "source": source, "scheduler": scheduler, "policy_version": policy_version,
                "phase": phase, "scenario_name": scenario.name,
                "config_json": json.dumps(scenario.model_dump(mode="json"), sort_keys=True),
                "network_seed": None if network_seed is None else int(network_seed),
                "nodes": scenario.nodes, "slots": scenario.slots, "slot_s": scenario.slot_s,
                "obs_layout": OBS_LAYOUT_VERSION, "status": "running", "started_at": _now(),
                "ended_at": None, "note": note,
            }).scalar_one()
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
            raise UserError(f"run {run_id} is not in {_safe(self.url)}")
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
                t.exec_wait_s, t.exec_s, t.end_s, t.exec_len, t.recv_len, t.peer_overloaded]
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
        end_columns = dict(zip(("episode_id", "node", "exec_len", "recv_len", "peer_overloaded"),
                               zip(*ends)))
        position = {episode_id: k for k, episode_id in enumerate(sorted(ids))}
        for episode_id in ids:  # in the caller's order; rows came sorted by episode id
            k = position[episode_id]
            rs = slice(k * per_episode, (k + 1) * per_episode)
            es = slice(k * n, (k + 1) * n)
            if set(by_name["episode_id"][rs]) != {episode_id} or set(end_columns["episode_id"][es]) != {episode_id}:
                raise UserError(f"episode {episode_id}: its rows in the log are incomplete")
            yield episode_id, _episode_from_columns(head[episode_id], by_name, rs, end_columns, es, slots, n)

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


# ---------------------------------------------------------------------------------- rows
def _nullable(values: np.ndarray) -> list:
    """A float array as a Python list with None for NaN (stored as NULL)."""
    values = np.asarray(values, dtype=np.float64)
    out = values.astype(object)
    out[np.isnan(values)] = None
    return out.tolist()


def _blobs(matrix: np.ndarray, dtype: str) -> list[bytes]:
    """One bytes value per row of a (M, N) array, in the given little-endian dtype."""
    flat = np.ascontiguousarray(matrix, dtype=dtype)
    raw = flat.tobytes()
    width = flat.shape[1] * flat.dtype.itemsize
    return [raw[k:k + width] for k in range(0, len(raw), width)]


def _unblobs(values: Sequence[bytes], n: int, dtype: str) -> np.ndarray:
    raw = b"".join(bytes(v) for v in values)
    out = np.frombuffer(raw, dtype=dtype)
    if out.size != len(values) * n:
        raise UserError(f"a stored vector has the wrong length (expected {n} values per row)")
    return out.reshape(len(values), n)


def task_columns(episode_id: int, log: EpisodeLog) -> dict[str, list]:
    """The ``tasks`` rows of one episode as columns of Python values (slot-major, then
    source), ready for a bulk insert."""
    t, n = log.has_task.shape
    has = log.has_task.reshape(-1)
    task_value = lambda a: _nullable(np.where(has, np.asarray(a, dtype=np.float64).reshape(-1), np.nan))  # noqa: E731
    size = np.asarray(log.size_bytes, dtype=np.float64).reshape(-1)
    cycles = np.asarray(log.cycles, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        complexity = cycles / (size * BITS_PER_BYTE)  # delta, cycles per bit
    dest = np.asarray(log.dest).reshape(-1)
    columns = {
        "episode_id": [episode_id] * (t * n),
        "slot": np.repeat(np.arange(t), n).tolist(),
        "source": np.tile(np.arange(n), t).tolist(),
        "status": np.asarray(log.outcome, dtype=np.int64).reshape(-1).tolist(),
        "destination": [None if d < 0 else d for d in dest.tolist()],
        "action": np.asarray(log.action, dtype=np.int64).reshape(-1).tolist(),
        "action_prob": task_value(log.action_prob),
        "size_bytes": task_value(size),
        "complexity_cpb": task_value(complexity),
        "cycles": task_value(cycles),
        "deadline_s": task_value(log.deadline_s),
        "tx_wait_s": task_value(log.tx_wait_s),
        "tx_s": task_value(log.tx_s),
        "exec_wait_s": task_value(log.exec_wait_s),
        "exec_s": task_value(log.exec_s),
        "end_s": task_value(log.end_s),
        "exec_len": np.asarray(log.exec_len, dtype=np.int64).reshape(-1).tolist(),
        "recv_len": _blobs(np.asarray(log.recv_len).reshape(t * n, n), S.RECV_LEN_DTYPE),
        "peer_overloaded": _blobs(np.asarray(log.peer_overloaded).reshape(t * n, n), S.PEER_FLAG_DTYPE),
    }
    return columns


def task_rows(episode_id: int, log: EpisodeLog) -> list[dict]:
    """The ``tasks`` rows of one episode as dicts, (slot, source) in row-major order."""
    columns = task_columns(episode_id, log)
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]


def _insert_tasks(conn, columns: dict[str, list]) -> int:
    """Bulk-insert one episode's task rows inside the caller's transaction.

    SQLite: the rows go to the driver's ``executemany`` as tuples (SQLAlchemy's per-row
    parameter processing would cost about half of the time; the values are already plain
    Python and the blobs bytes). PostgreSQL: ``COPY ... FROM STDIN`` on the same connection,
    about 2.5 times the rows per second of a batched INSERT. Other backends: a Core insert."""
    names = list(columns)
    quote = conn.dialect.identifier_preparer.quote
    table = quote(S.tasks.name)
    column_list = ", ".join(quote(c) for c in names)
    rows = list(zip(*columns.values()))
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"INSERT INTO {table} ({column_list}) "
                             f"VALUES ({', '.join('?' for _ in names)})", rows)
    elif conn.dialect.driver == "psycopg":
        with conn.connection.driver_connection.cursor() as cursor, \
                cursor.copy(f"COPY {table} ({column_list}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        conn.execute(insert(S.tasks), [dict(zip(names, values)) for values in rows])
    return len(rows)


def end_state_rows(episode_id: int, log: EpisodeLog) -> list[dict]:
    n = log.nodes
    recv = _blobs(np.asarray(log.final_recv_len).reshape(n, n), S.RECV_LEN_DTYPE)
    flags = _blobs(np.asarray(log.final_peer_overloaded).reshape(n, n), S.PEER_FLAG_DTYPE)
    return [{"episode_id": episode_id, "node": i, "exec_len": int(log.final_exec_len[i]),
             "recv_len": recv[i], "peer_overloaded": flags[i]} for i in range(n)]


def _episode_from_columns(head, c: dict, rs: slice, ends: dict, es: slice, t: int, n: int) -> EpisodeLog:
    grid = lambda name, dtype=np.float64: np.array(c[name][rs], dtype=dtype).reshape(t, n)  # noqa: E731
    outcome = grid("status", np.int8)
    dest = np.array([-1 if d is None else d for d in c["destination"][rs]], dtype=np.int64).reshape(t, n)
    return EpisodeLog(
        episode_seed=int(head.episode_seed), episode_index=int(head.episode_index),
        has_task=outcome != EMPTY,
        size_bytes=grid("size_bytes"), cycles=grid("cycles"), deadline_s=grid("deadline_s"),
        action=grid("action", np.int64), action_prob=grid("action_prob"), dest=dest,
        outcome=outcome, end_s=grid("end_s"), tx_wait_s=grid("tx_wait_s"), tx_s=grid("tx_s"),
        exec_wait_s=grid("exec_wait_s"), exec_s=grid("exec_s"),
        exec_len=grid("exec_len", np.int64),
        recv_len=_unblobs(c["recv_len"][rs], n, S.RECV_LEN_DTYPE).astype(np.int64).reshape(t, n, n),
        peer_overloaded=_unblobs(c["peer_overloaded"][rs], n, S.PEER_FLAG_DTYPE).astype(bool).reshape(t, n, n),
        final_exec_len=np.array(ends["exec_len"][es], dtype=np.int64),
        final_recv_len=_unblobs(ends["recv_len"][es], n, S.RECV_LEN_DTYPE).astype(np.int64),
        final_peer_overloaded=_unblobs(ends["peer_overloaded"][es], n, S.PEER_FLAG_DTYPE).astype(bool),
    )


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
        with self.store.engine.begin() as conn:
            for log in logs:
                episode_id = conn.execute(insert(S.episodes).returning(S.episodes.c.id), {
                    "run_id": self.run_id, "episode_index": int(log.episode_index),
                    "episode_seed": int(log.episode_seed), "written_at": _now(),
                }).scalar_one()
                rows += _insert_tasks(conn, task_columns(episode_id, log))
                conn.execute(insert(S.episode_end_state), end_state_rows(episode_id, log))
        self.episodes_written += len(logs)
        self.rows_written += rows
        return rows

    def finish(self, status: str = "completed") -> None:
        with _sigint_deferred():  # a second Ctrl-C must not leave the run marked running
            self.store.mark_run(self.run_id, status)
        self.status = status

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.status != "running":
            return
        self.finish("completed" if exc_type is None else "interrupted")
