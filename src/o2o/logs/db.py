"""Opening a task-log database: what the user typed (a path or a URL) to a checked SQLAlchemy
engine.

Opening is careful, because the user names the database: a path that is not a SQLite file, a
database that holds other tables but no task log, a log of another schema version, a server
that does not answer: each is refused with a :class:`~o2o.core.errors.UserError` that says what
is wrong, before anything is written. Only ``create=True`` (``o2o collect``) creates a new file
or the tables in an empty database; two processes creating the same log at once are serialized
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-level advisory lock), so the second one
finds the first one's tables. ``read_only=True`` (``o2o logs summary``, ``o2o dataset export``)
never writes: it also reads a log on a read-only file, folder or medium, where SQLite cannot
create the ``-wal`` and ``-shm`` files a WAL database needs, by opening it ``immutable``.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.request import pathname2url

from sqlalchemy import create_engine, event, insert, inspect, select
from sqlalchemy import text as sql_text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from o2o.core.errors import UserError
from o2o.core.outputs import check_output_file
from o2o.logs import schema as S

SQLITE_HEADER = b"SQLite format 3\x00"
# How long a SQLite writer waits for another one's transaction before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60.0
# PostgreSQL advisory lock taken by the transaction that creates the tables (any fixed number).
CREATE_LOCK_KEY = 0x6F326F   # "o2o"


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
        raise UserError(f"unsupported database {url.get_backend_name()!r} in {safe_url(url)}; use a "
                        "SQLite path or sqlite:///PATH, or postgresql+psycopg://USER:PASS@HOST/DB")
    return url


def safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def describe_db(db: str | Path) -> str:
    """What to print for a ``--db`` value: the path, or the URL with its password hidden."""
    text = str(db)
    if "://" not in text:
        return text
    try:
        return safe_url(make_url(text))
    except (ArgumentError, ValueError):
        return "<unreadable database URL>"


@contextmanager
def sigint_deferred():
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


def _check_sqlite_file(path: Path, create: bool, read_only: bool) -> None:
    """Refuse, before SQLite touches it, a path that cannot hold a task log, or that a writer
    cannot write."""
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a task-log database file")
    if not path.exists():
        if not create:
            raise UserError(f"no task log at {path}: the file does not exist "
                            "(write one with `o2o collect --db PATH`)")
        check_output_file(path, "--db")  # a writable place, before any folder is made
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the folder of {path}: {exc.strerror}") from None
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    # A zero-byte file is an empty SQLite database; anything else must carry the header.
    if head and head != SQLITE_HEADER:
        raise UserError(f"{path} is not a SQLite database (is it the right file?); "
                        "nothing was changed")
    if not read_only and not _writable(path):
        raise UserError(f"task log {path} cannot be written here (a read-only file, folder or "
                        "medium): it can be read (o2o logs summary, o2o dataset export); to add "
                        "runs, copy it to a writable place")


def _writable(path: Path) -> bool:
    """Whether this process can write the file and create files beside it (a WAL database's
    ``-wal`` and ``-shm``); False on a read-only file, folder or medium."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _read_only_sqlite_url(path: Path) -> URL:
    """A URL that opens ``path`` without writing anything, for a place nothing can be written.

    ``mode=ro`` reads through an existing ``-wal`` (a writer is active, or one was killed);
    without one, ``immutable=1`` reads the file alone and creates no ``-shm``, which a
    read-only medium could not hold. Immutable is safe there because no writer can exist: a
    writer of a WAL database needs to create those files."""
    query = {"uri": "true", "mode": "ro"}
    if not Path(f"{path}-wal").exists():
        query["immutable"] = "1"
    return URL.create("sqlite", database="file:" + pathname2url(str(path.resolve())), query=query)


def _make_engine(url: URL, path: Path | None = None, read_only: bool = False) -> Engine:
    if url.get_backend_name() == "sqlite":
        if read_only and path is not None and not _writable(path):
            url = _read_only_sqlite_url(path)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # per connection; writes nothing to the file
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            # WAL (set once, at creation) makes a commit one append; NORMAL sync keeps every
            # committed episode through an application crash, which is what we promise.
            cur.execute("PRAGMA synchronous=NORMAL")
            if read_only:
                cur.execute("PRAGMA query_only=ON")
            cur.close()

        @event.listens_for(engine, "handle_error")
        def _keep_connection_on_interrupt(ctx):
            # Ctrl-C in a driver call: SQLAlchemy treats the connection as broken and closes it
            # without closing its cursor. Python's sqlite3 (3.11+) then closes with
            # sqlite3_close_v2, which keeps a connection with live statements open as a
            # "zombie" holding its write transaction, so the next writer (marking the run
            # interrupted) waits out the busy timeout and fails with "database is locked". A
            # SQLite call runs in this process and is whole when it returns: the connection is
            # sound, so keep it; its cursor is closed and its transaction rolled back as after
            # any other error.
            if ctx.is_disconnect and not isinstance(ctx.original_exception, Exception):
                ctx.is_disconnect = False
        return engine
    options = {"postgresql_readonly": True} if read_only else {}
    return create_engine(url, connect_args={"connect_timeout": 10}, pool_pre_ping=True,
                         execution_options=options)


def open_task_log(db: str | Path, create: bool = False,
                  read_only: bool = False) -> tuple[Engine, URL]:
    """The engine of the task log at ``db`` (a path or URL), its schema checked.

    ``create=True`` creates a missing SQLite file or the tables of an empty database; an
    existing log is opened as it is. ``read_only=True`` gives an engine that cannot write
    (and reads a SQLite log on read-only storage). Raises UserError for a missing file
    (without ``create``), a non-SQLite file, a database with other tables, an unknown schema
    version, or a server that cannot be reached; none of these is modified."""
    if create and read_only:
        raise ValueError("a task log opened read-only cannot be created")
    url = resolve_url(db)
    path = _sqlite_path(url) if url.get_backend_name() == "sqlite" else None
    if path is not None:
        _check_sqlite_file(path, create, read_only)
    try:
        engine = _make_engine(url, path, read_only)
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise UserError(f"cannot use database {safe_url(url)}: {exc}") from None
    try:
        _check_schema(engine, url, create)
    except BaseException:
        engine.dispose()
        raise
    return engine, url


def _set_wal(conn) -> None:
    """Put a new SQLite log in WAL mode: a property of the file, set once, before any table
    and outside a transaction. Two processes creating the same log can both get here; SQLite
    may then answer one of them "database is locked" at once (it skips the busy handler where
    waiting could deadlock), and that one asks again until the other has set it."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while conn.exec_driver_sql("PRAGMA journal_mode").scalar() != "wal":
        try:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _table_names(conn) -> set[str]:
    return set(inspect(conn).get_table_names())


def _check_schema(engine: Engine, url: URL, create: bool) -> None:
    where = safe_url(url)
    sqlite = url.get_backend_name() == "sqlite"
    try:
        with engine.connect() as conn:
            names = _table_names(conn)
            if names:
                _check_existing(conn, names, where)
                return
            if not create:
                raise UserError(f"{where} holds no task log (it is empty)")
            if sqlite:
                _set_wal(conn)
        with engine.begin() as conn:
            # One creator at a time: the lock is held to the commit, and whoever waited for
            # it finds the tables made, whole (DDL and rows are one transaction).
            if sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execute(sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_LOCK_KEY})
            names = _table_names(conn)
            if names:
                _check_existing(conn, names, where)
                return
            S.metadata.create_all(conn)
            conn.execute(insert(S.schema_info), {"format": S.SCHEMA_FORMAT,
                                                 "version": S.SCHEMA_VERSION})
            conn.execute(insert(S.task_status), S.STATUS_ROWS)
    except UserError:
        raise
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if sqlite and "not a database" in reason:
            raise UserError(f"{where} is not a SQLite database; nothing was changed") from None
        raise UserError(f"cannot open task log {where}: {reason}") from None
    except SQLAlchemyError as exc:
        raise UserError(f"cannot open task log {where}: {exc}") from None


def _check_existing(conn, names: set[str], where: str) -> None:
    if S.schema_info.name not in names:
        raise UserError(f"{where} is not an o2o task log (it has other tables: "
                        f"{', '.join(sorted(names)[:5])}); nothing was changed")
    rows = conn.execute(select(S.schema_info.c.format, S.schema_info.c.version)).all()
    if len(rows) != 1 or rows[0].format != S.SCHEMA_FORMAT:
        raise UserError(f"{where} has an {S.schema_info.name} table but not of an o2o task log")
    version = rows[0].version
    if version != S.SCHEMA_VERSION:
        hint = (" (version 1 logs lack the probed backlogs of observation v2; collect the runs "
                "again, or read it with the o2o that wrote it)") if version == 1 else ""
        raise UserError(f"{where} is a task log of schema version {version}; this o2o reads "
                        f"version {S.SCHEMA_VERSION} only{hint}")
    missing = S.TABLE_NAMES - names
    if missing:
        raise UserError(f"{where} is a damaged task log: tables {', '.join(sorted(missing))} "
                        "are missing")
