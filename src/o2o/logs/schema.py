"""The task-log schema (the task fields of paper VI-A), SQLAlchemy Core, the same on SQLite
and PostgreSQL.

Tables (one database can hold many runs):

``o2o_schema``
    one row: ``format = 'o2o-task-log'`` and the schema ``version``; checked on every open, so a
    foreign database or a log written by an incompatible version is refused, not modified.
``runs``
    one row per run: where it ran (``source``: sim or testbed), the scenario as JSON, the network
    seed, the scheduler, the policy version (a model's version for ``drl``), the phase
    (heuristic, online, evaluation, ...), the observation layout, start and end times (UTC) and
    ``status``: running, completed or interrupted.
``nodes``, ``links``
    the run's network: per node cores, F_i, alpha_i, lambda_i, overload threshold; per ordered
    link i -> j (the diagonal included, as in :class:`o2o.core.network.Network`) rate and beta.
``task_status``
    the outcome codes and their names (EMPTY, SUCCESS, DROP, EXECUTION_FAILURE, ...).
``episodes``
    one row per finished episode: run, index in the run, episode seed.
``tasks``
    one row per node per slot, EMPTY rows included, with the paper's fields (section VI-A): task
    id, slot, source, destination, status, size, complexity, CPU cycles, deadline, transmission
    waiting time, transmission time, execution waiting time, execution time; and what rebuilds
    the transition: the action, its probability, the end time of the task (reward), the
    deciding node's execution queue length and receiving queues (observation) and the overload
    flags it saw (mask).
``episode_end_state``
    per node, what it would see at the boundary after the last slot (the last next-observation).

Vectors over the N nodes are stored as little-endian binary: ``recv_len`` as N int32 (entry j:
tasks in flight from j to this node), ``peer_overloaded`` as N bytes 0/1 (entry j: node j's
overload flag as this node saw it), ``peer_backlog_s`` as N float64 (entry j: node j's execution
backlog in seconds as this node probed it, NaN unknown) and ``send_backlog_s`` as N float64
(entry j: this node's send backlog on its link to j). NaN numbers are stored as NULL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Double as Double_

from o2o.core.outcomes import OUTCOME_NAMES

SCHEMA_FORMAT = "o2o-task-log"
SCHEMA_VERSION = 2
# Version 2 added ``peer_backlog_s`` and ``send_backlog_s`` to ``tasks`` (what observation v2
# is rebuilt from). A version-1 log is refused with a
# message, never read as if it had them.

RUN_STATUSES = ("running", "completed", "interrupted")
SOURCES = ("sim", "testbed")

# Binary layouts of the per-row vectors over nodes (see the module docstring).
RECV_LEN_DTYPE = "<i4"
PEER_FLAG_DTYPE = "u1"
BACKLOG_DTYPE = "<f8"

metadata = MetaData()

# Double precision on both backends (SQLite REAL is a 64-bit float already), so times and
# rates read back bit for bit equal and the rebuilt transitions are exact.
Double = Double_()

schema_info = Table(
    "o2o_schema", metadata,
    Column("format", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(16), nullable=False),            # sim | testbed
    Column("scheduler", String(64), nullable=False),
    Column("policy_version", String(128)),                   # model version for drl, else NULL
    Column("phase", String(32), nullable=False),              # heuristic | online | evaluation ...
    Column("scenario_name", String(128), nullable=False),
    Column("config_json", Text, nullable=False),              # the full Scenario, JSON
    Column("network_seed", BigInteger),
    Column("nodes", Integer, nullable=False),
    Column("slots", Integer, nullable=False),
    Column("slot_s", Double, nullable=False),
    Column("obs_layout", String(32), nullable=False),
    Column("status", String(16), nullable=False),             # running | completed | interrupted
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("note", Text),
)

nodes = Table(
    "nodes", metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("node", Integer, primary_key=True),
    Column("cores", Integer, nullable=False),
    Column("capacity_hz", Double, nullable=False),
    Column("node_fail_rate", Double, nullable=False),         # alpha_i, per second
    Column("arrival_prob", Double, nullable=False),           # lambda_i
    Column("overload_threshold", Double, nullable=False),
)

links = Table(
    "links", metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("src", Integer, primary_key=True),
    Column("dst", Integer, primary_key=True),
    Column("rate_Bps", Double, nullable=False),               # r_ij, bytes per second
    Column("fail_rate", Double, nullable=False),              # beta_ij, per second
)

task_status = Table(
    "task_status", metadata,
    Column("code", SmallInteger, primary_key=True, autoincrement=False),
    Column("name", String(32), nullable=False),
)

episodes = Table(
    "episodes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("episode_index", Integer, nullable=False),
    Column("episode_seed", BigInteger, nullable=False),
    Column("written_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("run_id", "episode_index", name="uq_episode_index"),
)

tasks = Table(
    "tasks", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),                                # the task id
    Column("episode_id", Integer, ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False),
    Column("slot", Integer, nullable=False),
    Column("source", Integer, nullable=False),                 # node i where the task arrived
    Column("status", SmallInteger, ForeignKey("task_status.code"), nullable=False),
    Column("destination", Integer),                            # j; NULL without a task
    Column("action", Integer, nullable=False),                 # 0..N-1, N = no task
    Column("action_prob", Double),                             # NULL: unknown
    Column("size_bytes", Double),                              # s
    Column("complexity_cpb", Double),                          # delta, CPU cycles per bit
    Column("cycles", Double),                                  # c = delta * s
    Column("deadline_s", Double),                              # d, relative to arrival
    Column("tx_wait_s", Double),                               # T^tw
    Column("tx_s", Double),                                    # T^t (nominal)
    Column("exec_wait_s", Double),                             # T^cw
    Column("exec_s", Double),                                  # T^c (nominal)
    Column("end_s", Double),                                   # outcome time since episode start
    Column("exec_len", Integer, nullable=False),               # l_i at the decision
    Column("recv_len", LargeBinary, nullable=False),           # N x int32
    Column("peer_overloaded", LargeBinary, nullable=False),    # N x uint8
    Column("peer_backlog_s", LargeBinary, nullable=False),     # N x float64
    Column("send_backlog_s", LargeBinary, nullable=False),     # N x float64
    Index("ix_tasks_episode_slot_source", "episode_id", "slot", "source", unique=True),
)

episode_end_state = Table(
    "episode_end_state", metadata,
    Column("episode_id", Integer, ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True),
    Column("node", Integer, primary_key=True),
    Column("exec_len", Integer, nullable=False),
    Column("recv_len", LargeBinary, nullable=False),
    Column("peer_overloaded", LargeBinary, nullable=False),
)

TABLE_NAMES = frozenset(metadata.tables)
STATUS_ROWS = [{"code": code, "name": name} for code, name in sorted(OUTCOME_NAMES.items())]
