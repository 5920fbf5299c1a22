"""The task-log store on both backends: exact round trips, run status, interrupt safety,
schema checks. PostgreSQL tests need O2O_TEST_POSTGRES_URL (``scripts/start-postgres.sh``);
without it they skip, except under CI (env ``CI`` set), where they fail."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect, text

from o2o.cli.common import summarize
from o2o.core.episodes import sample_episodes
from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.logs import store as store_module
from o2o.logs.collect import collect
from o2o.logs.dataset import build_dataset
from o2o.logs.records import episode_logs_from_rollout
from o2o.logs.store import LogStore
from o2o.logs.transitions import rebuild_transitions
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

SMALL = ["nodes=4", "slots=10"]
BUSY = ["nodes=5", "slots=12", "arrival_prob=[0.7, 1.0]", "queue_coef=1", "deadline_s=[2, 6]",
        "cores=[4, 8]", "node_fail_rate=[0, 0.3]", "link_fail_rate=[0, 0.2]",
        "link_rate_mbps=[2, 8]", "task_size_kb=[500, 3000]"]


def postgres_base_url() -> str:
    url = os.environ.get("O2O_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("O2O_TEST_POSTGRES_URL is not set under CI: the PostgreSQL tests must run")
        pytest.skip("O2O_TEST_POSTGRES_URL is not set (export it from scripts/start-postgres.sh)")
    return url


@pytest.fixture
def postgres_url():
    """A URL whose connections use a fresh PostgreSQL schema of their own (so tests can run
    in parallel), dropped afterwards."""
    base = postgres_base_url()
    schema = f"o2o_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "logs" / "task-log.db")  # the folder does not exist yet
    return request.getfixturevalue("postgres_url")


def _table_names(url: str) -> set[str]:
    if "://" not in url:
        url = f"sqlite:///{url}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _run(overrides, seeds, name="ratc", network_seed=1):
    scenario = load_scenario("paper-sim", overrides)
    network = sample_network(scenario, network_seed)
    logs = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, seeds),
                                     make_scheduler(name))
    return scenario, network, logs


def test_round_trip_is_exact(db_url):
    scenario, network, logs = _run(BUSY, [1, 2, 3], "random")
    with LogStore.open(db_url, create=True) as store:
        with store.start_run(scenario, network, "random", network_seed=1) as run:
            assert run.write_episodes(logs[:2]) == 2 * scenario.slots * scenario.nodes
            run.write_episodes(logs[2:])
        info = store.run(run.run_id)
        assert info.status == "completed" and info.ended_at is not None
        assert info.ended_at >= info.started_at
        assert (info.scheduler, info.source, info.phase, info.network_seed) == ("random", "sim", "heuristic", 1)
        assert info.scenario == scenario
        back_net = store.network(run.run_id)
        for field in network.__dataclass_fields__:
            assert np.array_equal(getattr(back_net, field), getattr(network, field)), field
        back = list(store.read_episodes(run.run_id, batch=2))
    assert [episode_id for episode_id, _ in back] == sorted(episode_id for episode_id, _ in back)
    for (_, got), want in zip(back, logs, strict=True):
        assert got.equals(want)
        got.validate()
    # NaN probabilities (unknown) come back as NaN, not as 0.
    _, _, ratc_logs = _run(SMALL, [4], "ratc")
    with LogStore.open(db_url) as store:
        with store.start_run(load_scenario("paper-sim", SMALL), sample_network(load_scenario("paper-sim", SMALL), 1),
                             "ratc") as run:
            run.write_episodes(ratc_logs)
        (_, got), = store.read_episodes(run.run_id)
    assert np.isnan(got.action_prob).all() and got.equals(ratc_logs[0])


def test_transitions_from_the_database_equal_those_from_memory(db_url):
    scenario, network, logs = _run(BUSY, [7, 8], "ratc")
    with LogStore.open(db_url, create=True) as store:
        with store.start_run(scenario, network, "ratc") as run:
            run.write_episodes(logs)
        # Everything from the database: scenario, network and episodes.
        stored = [log for _, log in store.read_episodes(run.run_id)]
        rebuilt = rebuild_transitions(store.run(run.run_id).scenario, store.network(run.run_id),
                                      stored, "decision")
        data = build_dataset(store, reward_credit="decision")
    direct = rebuild_transitions(scenario, network, logs, "decision")
    for field in direct.__dataclass_fields__:
        assert np.array_equal(getattr(direct, field), getattr(rebuilt, field), equal_nan=True), field
    d = scenario.nodes * 3 + 6
    assert np.array_equal(data["observations"], direct.observations.reshape(-1, d))
    assert np.array_equal(data["rewards"], direct.rewards.reshape(-1))


def test_summary_success_rate_equals_the_simulator(db_url):
    scenario = load_scenario("paper-sim", SMALL)
    network = sample_network(scenario, 2)
    seeds = list(range(10, 19))
    with LogStore.open(db_url, create=True) as store:
        result = collect(store, scenario, network, make_scheduler("rda"), "rda", seeds,
                         network_seed=2, batch_size=4)
        (summary,) = store.summary()
    reference = summarize(simulate(scenario, network, seeds, make_scheduler("rda")))
    assert summary["episodes"] == len(seeds) and summary["status"] == "completed"
    for key in ("tasks", "success", "drop", "exec_fail", "trans_fail", "success_rate",
                "success_rate_std"):
        assert summary[key] == reference[key], key
    assert result.success_rate == reference["success_rate"]
    assert result.task_rows == len(seeds) * scenario.slots * scenario.nodes


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_collect_keeps_whole_batches_and_marks_the_run(db_url, error):
    scenario = load_scenario("paper-sim", SMALL)
    network = sample_network(scenario, 0)
    calls = {"steps": 0}

    def fail_in_third_batch(engine, actions, probs):
        calls["steps"] += 1
        if calls["steps"] == 2 * scenario.slots + 4:  # slot 4 of the third batch
            raise error("stop")

    with LogStore.open(db_url, create=True) as store:
        with pytest.raises(error):
            collect(store, scenario, network, make_scheduler("ratc"), "ratc", range(10),
                    batch_size=3, on_step=fail_in_third_batch)
        (info,) = store.runs()
        assert info.status == "interrupted" and info.ended_at is not None
        counts = store.episode_counts(info.id)
        assert counts.episode_index.tolist() == [0, 1, 2, 3, 4, 5]
        for _, log in store.read_episodes(info.id):  # every kept episode is whole
            log.validate()
        # The run can be read and exported as it is.
        assert build_dataset(store)["actions"].shape[0] == 6 * scenario.slots * scenario.nodes


def test_a_failure_while_writing_leaves_nothing_of_the_batch(db_url, monkeypatch):
    scenario, network, logs = _run(SMALL, [1, 2, 3])
    real_insert = store_module.insert_tasks
    calls = {"n": 0}

    def insert_then_fail(conn, columns):
        calls["n"] += 1
        if calls["n"] == 3:  # the second episode of the second batch
            raise KeyboardInterrupt
        return real_insert(conn, columns)

    monkeypatch.setattr(store_module, "insert_tasks", insert_then_fail)
    with LogStore.open(db_url, create=True) as store:
        with pytest.raises(KeyboardInterrupt):
            with store.start_run(scenario, network, "ratc") as run:
                run.write_episodes(logs[:1])
                run.write_episodes(logs[1:])
        assert store.run(run.run_id).status == "interrupted"
        assert store.episode_ids(run.run_id) == store.episode_ids(run.run_id)[:1]
        assert len(store.episode_ids(run.run_id)) == 1
        rows = store.episode_counts(run.run_id)
        assert rows.tasks.tolist() == [logs[0].tasks]
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tasks")).scalar_one() == scenario.slots * scenario.nodes
            assert conn.execute(text("SELECT count(*) FROM episode_end_state")).scalar_one() == scenario.nodes


@pytest.mark.postgres
def test_ctrl_c_inside_a_postgres_copy_leaves_nothing_and_no_traceback(postgres_url, monkeypatch):
    """Ctrl-C while a COPY is half sent leaves the connection inside that command, where a
    ROLLBACK fails ("another command is already in progress"): the writer must close that
    connection instead, so the interrupt, not a driver error, reaches the caller, the batch is
    not written, and the run can still be marked interrupted."""
    scenario, network, logs = _run(SMALL, [1, 2])

    def copy_then_interrupt(conn, columns):
        pgconn = conn.connection.driver_connection.pgconn
        pgconn.send_query(b"COPY tasks (episode_id) FROM STDIN")  # the server now waits for rows
        raise KeyboardInterrupt

    with LogStore.open(postgres_url, create=True) as store:
        with store.start_run(scenario, network, "ratc") as run:
            run.write_episodes(logs[:1])
        monkeypatch.setattr(store_module, "insert_tasks", copy_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            with store.start_run(scenario, network, "ratc") as broken:
                broken.write_episodes(logs[1:])
        assert store.run(broken.run_id).status == "interrupted"
        assert store.episode_ids(broken.run_id) == []
        assert len(store.episode_ids(run.run_id)) == 1


def test_delete_run_removes_everything_of_that_run_only(db_url):
    scenario, network, logs = _run(SMALL, [1, 2])
    with LogStore.open(db_url, create=True) as store:
        with store.start_run(scenario, network, "ratc") as keep:
            keep.write_episodes(logs)
        with store.start_run(scenario, network, "ratc") as drop:
            drop.write_episodes(logs)
        store.delete_run(drop.run_id)
        assert [r.id for r in store.runs()] == [keep.run_id]
        assert len(store.episode_ids(keep.run_id)) == 2
        with store.engine.connect() as conn:
            for table, per_episode in (("tasks", scenario.slots * scenario.nodes),
                                       ("episode_end_state", scenario.nodes)):
                assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 2 * per_episode
            assert conn.execute(text("SELECT count(*) FROM links")).scalar_one() == scenario.nodes ** 2


def test_opening_refuses_foreign_and_unknown_databases_without_touching_them(db_url):
    # Empty database: refused without create, and nothing is created.
    if "://" in db_url:
        with pytest.raises(UserError, match="holds no task log"):
            LogStore.open(db_url)
        assert _table_names(db_url) == set()
    else:
        with pytest.raises(UserError, match="does not exist"):
            LogStore.open(db_url)
        assert not os.path.exists(db_url)
    # A database with other tables: refused, even with create, and left as it was.
    url = db_url if "://" in db_url else f"sqlite:///{db_url}"
    os.makedirs(os.path.dirname(db_url), exist_ok=True) if "://" not in db_url else None
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)"))
        conn.execute(text("INSERT INTO accounts (id, owner) VALUES (1, 'someone')"))
    for create in (False, True):
        with pytest.raises(UserError, match="not an o2o task log"):
            LogStore.open(db_url, create=create)
    assert _table_names(db_url) == {"accounts"}
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE accounts"))
    # A task log of another schema version: refused and left as it was.
    with LogStore.open(db_url, create=True):
        pass
    with engine.begin() as conn:
        conn.execute(text("UPDATE o2o_schema SET version = 99"))
    with pytest.raises(UserError, match="schema version 99"):
        LogStore.open(db_url, create=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version FROM o2o_schema")).scalar_one() == 99
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar_one() == 0
    engine.dispose()


def test_bad_urls_are_user_errors():
    with pytest.raises(UserError, match="unsupported database"):
        LogStore.open("mysql://user@localhost/db")
    with pytest.raises(UserError, match="cannot read database URL") as err:
        LogStore.open("postgresql+psycopg://user:secret@host:notaport/db")
    assert "secret" not in str(err.value)
    with pytest.raises(UserError, match="cannot open task log .*127.0.0.1"):
        LogStore.open("postgresql+psycopg://o2o:secret@127.0.0.1:9/o2o")
    with pytest.raises(UserError) as err:
        LogStore.open("postgresql://o2o:secret@127.0.0.1:9/o2o")
    assert "secret" not in str(err.value)
