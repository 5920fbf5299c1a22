"""Opening task logs under stress: Ctrl-C inside the database driver, two processes creating
the same log at once, and reading a log where nothing may be written. SQLite and PostgreSQL
(the latter with O2O_TEST_POSTGRES_URL, as in ``test_store``)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import CursorResult

from o2o.core.errors import UserError
from o2o.logs import db as db_module
from o2o.logs import schema as S
from o2o.logs import store as store_module
from o2o.logs.store import LogStore
from tests.logs.test_store import SMALL, _run, db_url, postgres_url  # noqa: F401 (fixtures)


def _listing(folder) -> dict[str, int]:
    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in sorted(os.listdir(folder))}


# ------------------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_as_the_sqlite_driver_returns_leaves_no_lock(tmp_path, monkeypatch):
    """The cause of ``o2o collect`` hanging 60 s on Ctrl-C: an interrupt that lands inside the
    driver's insert made SQLAlchemy drop the connection with its statement alive, and SQLite
    kept that connection's write lock, so marking the run waited out the busy timeout and
    failed with "database is locked". Now the transaction is rolled back at once, the run is
    marked interrupted, and the episodes written before stay."""
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_S", 3.0)  # a regression fails in 3 s
    scenario, network, logs = _run(SMALL, [1, 2, 3])
    with LogStore.open(tmp_path / "x.db", create=True) as store:
        real = store.engine.dialect.do_executemany
        armed = threading.Event()

        def interrupted(cursor, statement, parameters, context=None):
            real(cursor, statement, parameters, context)
            if armed.is_set() and "INSERT INTO tasks" in statement:
                raise KeyboardInterrupt  # Ctrl-C, delivered as the driver call returns

        monkeypatch.setattr(store.engine.dialect, "do_executemany", interrupted)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            with store.start_run(scenario, network, "ratc") as run:
                run.write_episodes(logs[:1])
                armed.set()
                run.write_episodes(logs[1:])
        assert time.monotonic() - start < 2.0
        assert store.run(run.run_id).status == "interrupted"
        assert store.episode_counts(run.run_id).episode_index.tolist() == [0]
        # The connection went back to the pool whole: the log takes the next run.
        monkeypatch.setattr(store.engine.dialect, "do_executemany", real)
        with store.start_run(scenario, network, "ratc") as again:
            again.write_episodes(logs)
        assert store.run(again.run_id).status == "completed"


def test_ctrl_c_between_inserts_rolls_back_the_batch(db_url, monkeypatch):  # noqa: F811
    """On both backends: an interrupt in the middle of a batch keeps none of it."""
    scenario, network, logs = _run(SMALL, [1, 2, 3])
    real = store_module.insert_tasks
    calls = []

    def interrupted(conn, columns):
        calls.append(real(conn, columns))
        if len(calls) == 2:  # the second episode of the second batch
            raise KeyboardInterrupt
        return calls[-1]

    with LogStore.open(db_url, create=True) as store:
        monkeypatch.setattr(store_module, "insert_tasks", interrupted)
        with pytest.raises(KeyboardInterrupt):
            with store.start_run(scenario, network, "ratc") as run:
                run.write_episodes(logs[:1])
                run.write_episodes(logs[1:])
        assert store.run(run.run_id).status == "interrupted"
        assert store.episode_counts(run.run_id).episode_index.tolist() == [0]


def test_ctrl_c_while_a_row_is_fetched_during_a_sqlite_write(tmp_path, monkeypatch):
    """The cause of a flaky ``o2o collect`` interrupt: Ctrl-C landing while SQLAlchemy read the
    id back from ``INSERT … RETURNING`` left that statement alive on the connection, so
    marking the run interrupted failed with "SQL statements in progress". Raise the interrupt
    in any row fetch during a batch write (or just after the write, where none happens): the
    run is marked interrupted, the batch is not kept, and the log takes the next run."""
    scenario, network, logs = _run(SMALL, [1, 2])
    armed = threading.Event()
    for name in ("_fetchone_impl", "_fetchmany_impl", "_fetchall_impl"):
        real = getattr(CursorResult, name)

        def interrupted(self, *args, real=real, **kwargs):
            if armed.is_set():
                raise KeyboardInterrupt  # Ctrl-C, delivered inside the fetch
            return real(self, *args, **kwargs)

        monkeypatch.setattr(CursorResult, name, interrupted)
    with LogStore.open(tmp_path / "x.db", create=True) as store:
        with pytest.raises(KeyboardInterrupt):
            with store.start_run(scenario, network, "ratc") as run:
                run.write_episodes(logs[:1])
                armed.set()
                try:
                    run.write_episodes(logs[1:])
                finally:
                    armed.clear()
                raise KeyboardInterrupt  # just after the write, if no row was fetched
        assert store.run(run.run_id).status == "interrupted"
        assert store.episode_counts(run.run_id).episode_index.tolist() in ([0], [0, 1])
        with store.start_run(scenario, network, "ratc") as again:
            again.write_episodes(logs)
        assert store.run(again.run_id).status == "completed"


# ------------------------------------------------------------------------------ creation
def _open_together(target: str, count: int = 2) -> list[BaseException | None]:
    """``LogStore.open(target, create=True)`` from ``count`` threads released at once."""
    barrier = threading.Barrier(count)
    errors: list[BaseException | None] = [None] * count

    def one(k: int) -> None:
        barrier.wait()
        try:
            LogStore.open(target, create=True).close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors[k] = exc

    threads = [threading.Thread(target=one, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_creating_a_new_sqlite_log_at_once_from_two_places(tmp_path):
    """Two ``collect`` runs started together on a log that does not exist yet: both succeed,
    and the log has one schema row and every table."""
    for k in range(10):
        target = str(tmp_path / f"new-{k}" / "log.db")
        assert _open_together(target, 3) == [None, None, None]
        with LogStore.open(target) as store:
            assert store.runs() == []
            with store.engine.connect() as conn:
                assert set(inspect(conn).get_table_names()) == S.TABLE_NAMES
                assert conn.exec_driver_sql("SELECT count(*) FROM o2o_schema").scalar_one() == 1
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


@pytest.mark.postgres
def test_creating_a_new_postgres_log_at_once_from_two_places(postgres_url):  # noqa: F811
    engine = create_engine(postgres_url)
    try:
        for _ in range(5):
            assert _open_together(postgres_url, 3) == [None, None, None]
            with engine.connect() as conn:
                assert set(inspect(conn).get_table_names()) == S.TABLE_NAMES
                assert conn.exec_driver_sql("SELECT count(*) FROM o2o_schema").scalar_one() == 1
            with engine.begin() as conn:
                S.metadata.drop_all(conn)
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ read-only
def _log_with_a_run(target) -> int:
    scenario, network, logs = _run(SMALL, [1, 2])
    with LogStore.open(target, create=True) as store:
        with store.start_run(scenario, network, "ratc") as run:
            run.write_episodes(logs)
    return run.run_id


def test_reading_changes_nothing_and_cannot_write(db_url):  # noqa: F811
    run_id = _log_with_a_run(db_url)
    scenario, network, logs = _run(SMALL, [3])
    folder = os.path.dirname(db_url) if "://" not in db_url else None
    before = _listing(folder) if folder else None
    with LogStore.open(db_url, read_only=True) as store:
        assert [r["episodes"] for r in store.summary()] == [2]
        assert len(list(store.read_episodes(run_id))) == 2
        with pytest.raises(Exception, match="readonly|read-only"):
            store.start_run(scenario, network, "ratc")
    if folder:
        assert _listing(folder) == before  # no -wal or -shm left, nothing touched
    with LogStore.open(db_url) as store:
        assert len(store.runs()) == 1


def test_reading_a_log_where_nothing_can_be_written(tmp_path, monkeypatch):
    """A log on a read-only file, folder or medium (as this process sees it): read without the
    -wal and -shm files a WAL database needs; with a writer's -wal present, through it."""
    target = tmp_path / "log.db"
    run_id = _log_with_a_run(target)
    monkeypatch.setattr(db_module, "_writable", lambda path: False)
    before = _listing(tmp_path)
    with LogStore.open(target, read_only=True) as store:
        assert "immutable=1" in str(store.engine.url)
        assert [r["episodes"] for r in store.summary()] == [2]
        assert len(list(store.read_episodes(run_id))) == 2
    assert _listing(tmp_path) == before
    # A writer has the log open (its -wal holds a run not yet in the main file); this process
    # writes it, then reads it as one that cannot write would.
    scenario, network, logs = _run(SMALL, [3])
    monkeypatch.undo()
    with LogStore.open(target) as writer:
        with writer.start_run(scenario, network, "random") as run:
            run.write_episodes(logs)
        assert (tmp_path / "log.db-wal").exists()
        monkeypatch.setattr(db_module, "_writable", lambda path: False)
        with LogStore.open(target, read_only=True) as store:
            assert "immutable" not in str(store.engine.url)
            assert [r["scheduler"] for r in store.summary()] == ["ratc", "random"]


def test_writing_where_nothing_can_be_written_is_refused(tmp_path, monkeypatch):
    target = tmp_path / "log.db"
    _log_with_a_run(target)
    monkeypatch.setattr(db_module, "_writable", lambda path: False)
    before = _listing(tmp_path)
    with pytest.raises(UserError, match="cannot be written here"):
        LogStore.open(target, create=True)
    assert _listing(tmp_path) == before


def test_read_only_refusals_are_the_same(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        LogStore.open(tmp_path / "none.db", read_only=True)
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(ValueError):
        LogStore.open(tmp_path / "none.db", create=True, read_only=True)
