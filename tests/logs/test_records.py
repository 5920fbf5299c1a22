"""EpisodeLog: what the simulator logs per episode, and the record's own checks."""

from __future__ import annotations

import numpy as np
import pytest

from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.outcomes import DROP, EMPTY, EXEC_FAIL, SUCCESS, TRANS_FAIL
from o2o.core.scenario import load_scenario
from o2o.logs.records import EpisodeLog, episode_logs_from_rollout
from o2o.sim import make_scheduler
from o2o.sim.engine import Engine
from o2o.sim.rollout import rollout, rule_actions

SMALL = ["nodes=4", "slots=10"]
# Heavy load and low overload thresholds: queues, transfers, overload flags and every outcome.
# Slow links keep transfers in flight across slot boundaries (receiving queues).
BUSY = ["nodes=5", "slots=12", "arrival_prob=[0.7, 1.0]", "queue_coef=1", "deadline_s=[2, 6]",
        "cores=[4, 8]", "node_fail_rate=[0, 0.3]", "link_fail_rate=[0, 0.2]",
        "link_rate_mbps=[2, 8]", "task_size_kb=[500, 3000]"]


def _setup(overrides, seeds, scheduler="ratc", network_seed=1):
    scenario = load_scenario("paper-sim", overrides)
    network = sample_network(scenario, network_seed)
    episodes = sample_episodes(scenario, network, seeds)
    return scenario, network, episodes, make_scheduler(scheduler)


def test_logs_hold_the_engine_records_and_decisions():
    scenario, network, episodes, rule = _setup(BUSY, [3, 4, 5], "random")
    logs = episode_logs_from_rollout(scenario, network, episodes, rule, first_index=7)
    ref = rollout(scenario, network, episodes, make_scheduler("random"))
    e = ref.engine
    assert [log.episode_index for log in logs] == [7, 8, 9]
    assert [log.episode_seed for log in logs] == [3, 4, 5]
    for b, log in enumerate(logs):
        log.validate()
        has = episodes.has_task[b]
        assert np.array_equal(log.has_task, has)
        assert np.array_equal(log.outcome, e.outcome[b])
        assert np.array_equal(log.dest, e.dest[b])
        assert np.array_equal(log.action, ref.actions[b])
        assert np.array_equal(log.action_prob[has], ref.action_prob[b][has])  # random: 1/N
        assert np.all(log.action_prob[has] == 1 / scenario.nodes)
        assert np.array_equal(log.end_s[has], e.end_s[b][has])
        assert np.array_equal(log.size_bytes[has], episodes.size_bytes[b][has])
        assert np.array_equal(log.cycles[has], episodes.cycles[b][has])
        assert np.array_equal(log.deadline_s[has], episodes.deadline_s[b][has])
        assert log.successes == e.metrics()["success"][b]
        assert log.tasks == e.metrics()["tasks"][b]
    # The busy scenario really exercises every outcome.
    seen = set(np.unique(np.concatenate([log.outcome.ravel() for log in logs])).tolist())
    assert seen == {EMPTY, SUCCESS, DROP, EXEC_FAIL, TRANS_FAIL}


def test_logged_times_add_up_to_the_end_of_successful_tasks():
    scenario, network, episodes, rule = _setup(BUSY, [1, 2])
    for log in episode_logs_from_rollout(scenario, network, episodes, rule):
        t_idx, i_idx = np.nonzero(log.has_task)
        local = log.dest[t_idx, i_idx] == i_idx
        assert np.all(log.tx_wait_s[t_idx[local], i_idx[local]] == 0)
        assert np.all(log.tx_s[t_idx[local], i_idx[local]] == 0)
        assert np.all(log.tx_wait_s[t_idx, i_idx] >= 0)
        # Remote tasks: s / r_ij, exactly as the engine computes it.
        remote = ~local
        j = log.dest[t_idx[remote], i_idx[remote]]
        assert np.allclose(log.tx_s[t_idx[remote], i_idx[remote]],
                           log.size_bytes[t_idx[remote], i_idx[remote]]
                           / network.link_rate_Bps[i_idx[remote], j], rtol=1e-12)
        # Execution waiting time is defined exactly for tasks that reached an execution queue.
        reached = np.isfinite(log.exec_wait_s)
        assert np.all(reached[log.outcome == SUCCESS]) and np.all(reached[log.outcome == EXEC_FAIL])
        assert not np.any(reached[log.outcome == TRANS_FAIL])
        assert np.all(log.exec_wait_s[reached] >= 0)
        ok = log.outcome == SUCCESS
        arrival_s = np.arange(log.slots)[:, None] * scenario.slot_s + np.zeros(log.has_task.shape)
        total = arrival_s + log.tx_wait_s + log.tx_s + log.exec_wait_s + log.exec_s
        assert np.allclose(total[ok], log.end_s[ok], rtol=0, atol=1e-9)
        assert np.all(log.end_s[ok] <= arrival_s[ok] + log.deadline_s[ok] + 1e-9)


def test_snapshots_are_what_nodes_saw_before_each_decision():
    scenario, network, episodes, rule = _setup(BUSY, [8, 9], "ratc")
    logs = episode_logs_from_rollout(scenario, network, episodes, rule)
    engine = Engine(scenario, network, episodes)
    n = scenario.nodes
    while not engine.done:
        t = engine.t
        state = engine.node_state()
        for b, log in enumerate(logs):
            assert np.array_equal(log.exec_len[t], state.exec_len[b])
            for i in range(n):
                assert np.array_equal(log.recv_len[t, i], state.in_flight[b, i])
                assert np.array_equal(log.peer_overloaded[t, i], state.overloaded[b])
        engine.step(rule_actions(engine, rule)[0])
    state = engine.node_state()
    for b, log in enumerate(logs):
        assert np.array_equal(log.final_exec_len, state.exec_len[b])
        assert np.array_equal(log.final_recv_len, state.in_flight[b])
        assert np.array_equal(log.final_peer_overloaded, np.tile(state.overloaded[b], (n, 1)))
    # Not a vacuous check: queues and flags were non-trivial in this scenario.
    assert sum(int(log.recv_len.sum()) for log in logs) > 0
    assert any(log.peer_overloaded.any() for log in logs)


def test_an_episode_logs_the_same_alone_or_in_a_batch():
    scenario, network, _, rule = _setup(SMALL, [0])
    batch = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, [11, 12, 13]), rule)
    alone = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, [12]), rule,
                                      first_index=1)
    assert alone[0].equals(batch[1])
    assert not alone[0].equals(batch[0])


def test_empty_log_is_valid_and_validate_rejects_broken_logs():
    log = EpisodeLog.empty(slots=3, nodes=2, episode_seed=5, episode_index=0)
    log.validate()
    assert log.tasks == 0 and log.success_rate == 0.0
    # A task without an outcome.
    log.has_task[1, 0] = True
    log.action[1, 0] = log.dest[1, 0] = 1
    log.size_bytes[1, 0], log.cycles[1, 0], log.deadline_s[1, 0], log.end_s[1, 0] = 1e3, 1e6, 1.0, 0.4
    with pytest.raises(ValueError, match="final outcome"):
        log.validate()
    log.outcome[1, 0] = SUCCESS
    log.validate()
    log.dest[1, 0] = 0  # destination differs from the action
    with pytest.raises(ValueError, match="destination"):
        log.validate()
    log.dest[1, 0] = 1
    log.action[2, 1] = 0  # no task there, but a destination action
    with pytest.raises(ValueError, match="without a task"):
        log.validate()
    log.action[2, 1] = 2
    log.end_s[1, 0] = np.nan
    with pytest.raises(ValueError, match="end_s"):
        log.validate()
    log.end_s[1, 0] = 0.4
    log.recv_len = np.zeros((3, 2, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="recv_len"):
        log.validate()
