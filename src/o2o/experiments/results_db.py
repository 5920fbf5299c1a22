"""The results database of a sweep: one row per finished cell (point x method x seed).

A SQLite file in the sweep's output folder by default, or a PostgreSQL database by URL, opened
with the same care as a task log (``o2o.logs.db``): a path that is a folder or not a SQLite
file, a database with other tables, one of another format version, or one that belongs to
another sweep (another spec or plan: its hash differs) is refused with a one-line error
before anything is written.

Tables:

``sweep_info``
    one row: ``format``, ``version``, ``name``, ``plan``, ``spec_hash`` (SHA-256 of the spec
    and the plan's sizes), ``spec`` (that JSON), ``created_at``.
``cells``
    primary key (``point``, ``method``, ``seed``); ``seed`` is -1 for a method that is not
    trained (heuristics, central, bound). ``rates`` is the JSON list of the success rate of
    every held-out episode (in the order of the episode seeds), ``info`` a JSON object (task
    counts, the learning curve, times of the phases), ``seconds`` the time of the unit of work
    that wrote the cell, ``o2o_version`` and ``finished_at``.

Only the process that runs the sweep writes, and every unit of work is written in one
transaction: a cell is there whole or not at all, whatever stops the sweep (kill -9 included).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    select,
    tuple_,
)
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from o2o import __version__
from o2o.core.errors import UserError
from o2o.core.outputs import check_output_file
from o2o.logs.db import SQLITE_HEADER, resolve_url, safe_url

FORMAT = "o2o sweep results"
VERSION = 1
NO_SEED = -1

metadata = MetaData()
sweep_info = Table(
    "sweep_info", metadata,
    Column("format", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(128), nullable=False),
    Column("plan", String(32), nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)
cells = Table(
    "cells", metadata,
    Column("point", Integer, primary_key=True),
    Column("method", String(64), primary_key=True),
    Column("seed", Integer, primary_key=True),
    Column("point_value", Text, nullable=False),
    Column("rates", Text, nullable=False),
    Column("info", Text, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("o2o_version", String(32), nullable=False),
    Column("finished_at", String(40), nullable=False),
)
TABLES = {"sweep_info", "cells"}


@dataclass(frozen=True)
class Cell:
    point: int
    method: str
    seed: int                   # NO_SEED for a method that is not trained
    point_value: Any
    rates: list[float]          # success rate per held-out episode
    info: dict[str, Any]
    seconds: float

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.point, self.method, self.seed)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return None
    return Path(database)


def _engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
        return engine
    return create_engine(url, connect_args={"connect_timeout": 10}, pool_pre_ping=True)


class ResultsDB:
    """An open results database of one sweep (``spec_hash``)."""

    def __init__(self, engine: Engine, where: str):
        self.engine, self.where = engine, where

    @classmethod
    def open(cls, db: str | Path, *, name: str, plan: str, spec_hash: str, spec: dict[str, Any],
             create: bool) -> "ResultsDB":
        """Open (``create``: or create) the results of the sweep ``spec_hash``; refuses, with
        nothing changed, a database that is not one or belongs to another sweep."""
        url = resolve_url(db)
        where = safe_url(url) if "://" in str(db) else str(db)
        path = _sqlite_file(url)
        if path is not None:
            if path.is_dir():
                raise UserError(f"{path} is a folder, not a results database file")
            if not path.exists():
                if not create:
                    raise UserError(f"no results database at {path}: run the sweep first "
                                    "(without --report)")
                check_output_file(path, "--db")
            else:
                with path.open("rb") as fh:
                    head = fh.read(len(SQLITE_HEADER))
                if head and head != SQLITE_HEADER:
                    raise UserError(f"{path} is not a SQLite database; nothing was changed")
        try:
            engine = _engine(url)
        except (NoSuchModuleError, ArgumentError, ImportError) as exc:
            raise UserError(f"cannot use database {safe_url(url)}: {exc}") from None
        if path is not None and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            created = cls._check_or_create(engine, where, name, plan, spec_hash, spec, create)
        except BaseException:
            engine.dispose()
            raise
        if created and path is not None:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        return cls(engine, where)

    @staticmethod
    def _check_or_create(engine: Engine, where: str, name: str, plan: str, spec_hash: str,
                         spec: dict[str, Any], create: bool) -> bool:
        try:
            with engine.begin() as conn:
                names = set(inspect(conn).get_table_names())
                if not names:
                    if not create:
                        raise UserError(f"{where} holds no sweep results (it is empty)")
                    metadata.create_all(conn)
                    conn.execute(insert(sweep_info), {
                        "format": FORMAT, "version": VERSION, "name": name, "plan": plan,
                        "spec_hash": spec_hash, "spec": json.dumps(spec, sort_keys=True),
                        "created_at": _now()})
                    return True
                if "sweep_info" not in names:
                    raise UserError(f"{where} is not an o2o sweep results database (it has other "
                                    f"tables: {', '.join(sorted(names)[:5])}); nothing was changed")
                rows = conn.execute(select(sweep_info)).all()
                if len(rows) != 1 or rows[0].format != FORMAT:
                    raise UserError(f"{where} has a sweep_info table but not of o2o sweep results")
                row = rows[0]
                if row.version != VERSION:
                    raise UserError(f"{where} holds sweep results of format version {row.version}; "
                                    f"this o2o reads version {VERSION} only")
                if TABLES - names:
                    raise UserError(f"{where} is a damaged results database: tables "
                                    f"{', '.join(sorted(TABLES - names))} are missing")
                if row.spec_hash != spec_hash:
                    raise UserError(f"{where} holds the results of another sweep ({row.name}, plan "
                                    f"{row.plan}, spec hash {row.spec_hash[:12]}; this one is {name}, "
                                    f"plan {plan}, {spec_hash[:12]}); give another --out or --db. "
                                    "Nothing was changed")
                return False
        except UserError:
            raise
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if "not a database" in reason:
                raise UserError(f"{where} is not a SQLite database; nothing was changed") from None
            raise UserError(f"cannot open results database {where}: {reason}") from None
        except SQLAlchemyError as exc:
            raise UserError(f"cannot open results database {where}: {exc}") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "ResultsDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def finished(self) -> set[tuple[int, str, int]]:
        with self.engine.connect() as conn:
            return {(r.point, r.method, r.seed)
                    for r in conn.execute(select(cells.c.point, cells.c.method, cells.c.seed))}

    def write(self, new: Iterable[Cell]) -> None:
        """The cells of one unit of work, in one transaction (replacing any of the same key)."""
        new = list(new)
        if not new:
            return
        stamp = _now()
        rows = [{"point": c.point, "method": c.method, "seed": c.seed,
                 "point_value": json.dumps(c.point_value), "rates": json.dumps(c.rates),
                 "info": json.dumps(c.info, sort_keys=True), "seconds": float(c.seconds),
                 "o2o_version": __version__, "finished_at": stamp} for c in new]
        keys = [c.key for c in new]
        with self.engine.begin() as conn:
            conn.execute(delete(cells).where(
                tuple_(cells.c.point, cells.c.method, cells.c.seed).in_(keys)))
            conn.execute(insert(cells), rows)

    def read(self) -> list[Cell]:
        """Every cell; a column that is not what o2o writes (JSON that does not parse, NaN, a
        key that is not a whole number) refuses the database in one line naming the cell.
        ``o2o.experiments.cell_checks`` checks what the cells hold against their sweep."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(select(cells)).all()
        except (DBAPIError, ValueError, TypeError) as exc:  # a column of the wrong type
            raise UserError(f"results database {self.where}: cannot read its cells "
                            f"({str(exc).splitlines()[0][:200]}); it is damaged. Nothing was "
                            "written") from None
        out = []
        for r in rows:
            try:
                for key in ("point", "seed"):
                    if not isinstance(getattr(r, key), int):
                        raise DamagedCell(f"{key} is {getattr(r, key)!r}, not a whole number")
                if not isinstance(r.method, str):
                    raise DamagedCell(f"method is {r.method!r}, not a name")
                if not isinstance(r.seconds, (int, float)) or not math.isfinite(r.seconds):
                    raise DamagedCell(f"seconds is {r.seconds!r}, not a time")
                out.append(Cell(r.point, r.method, r.seed, _json_column(r.point_value, "point_value"),
                                _json_column(r.rates, "rates"), _json_column(r.info, "info"),
                                float(r.seconds)))
            except DamagedCell as exc:
                raise damaged(self.where, r.point, r.method, r.seed, str(exc)) from None
        return sorted(out, key=lambda c: (c.point, c.method, c.seed))


class DamagedCell(Exception):
    """What is wrong with one cell read back (``damaged`` names the cell and the database)."""


def damaged(where: str, point: Any, method: Any, seed: Any, what: str) -> UserError:
    return UserError(f"results database {where}: cell (point {point!r}, method {method!r}, seed "
                     f"{seed!r}): {what}; the database was changed by something other than o2o: "
                     "delete that row (or the database) and run the sweep again. Nothing was written")


def _json_column(text: Any, column: str) -> Any:
    """A JSON column of a cell (``info`` may hold NaN where a metric had none, as o2o writes
    it; the success rates are checked to be rates by ``o2o.experiments.cell_checks``)."""
    if not isinstance(text, str):
        raise DamagedCell(f"{column} is {type(text).__name__}, not JSON text")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DamagedCell(f"{column} is not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise DamagedCell(f"{column} is nested too deeply") from None
