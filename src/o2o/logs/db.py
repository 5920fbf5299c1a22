"""Opening a task-log database: what the user typed (a path or a URL) to a checked SQLAlchemy
engine.

Opening is careful, because the user names the database: a path that is not a SQLite file, a
database that holds other tables but no task log, a log of another schema version, a server
that does not answer: each is refused with a :class:`~o2o.core.errors.UserError` that says what
is wrong, before anything is written. Only ``create=True`` (``o2o collect``) creates a new file
or the tables in an empty database.
"""

from __future__ import annotations

import re
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, insert, inspect, select
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from o2o.core.errors import UserError
from o2o.logs import schema as S

SQLITE_HEADER = b"SQLite format 3\x00"


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


def open_task_log(db: str | Path, create: bool = False) -> tuple[Engine, URL]:
    """The engine of the task log at ``db`` (a path or URL), its schema checked.

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
        raise UserError(f"cannot use database {safe_url(url)}: {exc}") from None
    try:
        _check_schema(engine, url, create)
    except BaseException:
        engine.dispose()
        raise
    return engine, url


def _check_schema(engine: Engine, url: URL, create: bool) -> None:
    where = safe_url(url)
    try:
        with engine.begin() as conn:
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
                _check_existing(conn, names, where)
    except UserError:
        raise
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if url.get_backend_name() == "sqlite" and "not a database" in reason:
            raise UserError(f"{where} is not a SQLite database; nothing was changed") from None
        raise UserError(f"cannot open task log {where}: {reason}") from None
    except SQLAlchemyError as exc:
        raise UserError(f"cannot open task log {where}: {exc}") from None
    if created_sqlite:
        # Outside the transaction: WAL is a property of the file, set once at creation.
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")


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
