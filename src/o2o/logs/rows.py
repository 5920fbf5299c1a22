"""The row codec of the task log: an :class:`~o2o.logs.records.EpisodeLog` to the ``tasks`` and
``episode_end_state`` rows and back. Vectors over nodes are little-endian blobs and NaN numbers
NULL (``o2o.logs.schema``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sqlalchemy import insert

from o2o.core.errors import UserError
from o2o.core.network import BITS_PER_BYTE
from o2o.core.outcomes import EMPTY
from o2o.logs import schema as S
from o2o.logs.records import EpisodeLog


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
        "peer_backlog_s": _blobs(np.asarray(log.peer_backlog_s).reshape(t * n, n), S.BACKLOG_DTYPE),
        "send_backlog_s": _blobs(np.asarray(log.send_backlog_s).reshape(t * n, n), S.BACKLOG_DTYPE),
    }
    return columns


def insert_tasks(conn, columns: dict[str, list]) -> int:
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


def episode_from_columns(head, c: dict, rs: slice, ends: dict, es: slice, t: int, n: int) -> EpisodeLog:
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
        peer_backlog_s=_unblobs(c["peer_backlog_s"][rs], n, S.BACKLOG_DTYPE).reshape(t, n, n).copy(),
        send_backlog_s=_unblobs(c["send_backlog_s"][rs], n, S.BACKLOG_DTYPE).reshape(t, n, n).copy(),
    )
