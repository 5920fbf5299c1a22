"""Transitions rebuilt from logs equal, exactly, what the simulator's environment produces."""

from __future__ import annotations

import numpy as np
import pytest

from o2o.core.decpomdp import OBS_LAYOUT_V2, OBS_LAYOUT_VERSION, Observer, team_rewards
from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.outcomes import DROP, EXEC_FAIL, SUCCESS, TRANS_FAIL, end_slot
from o2o.core.scenario import load_scenario
from o2o.logs.records import EpisodeLog, episode_logs_from_rollout
from o2o.logs.transitions import rebuild_transitions
from o2o.schedulers import Rule
from o2o.sim import make_scheduler
from o2o.sim.env import OffloadVecEnv
from o2o.sim.rollout import rule_actions

BUSY = ["nodes=5", "slots=12", "arrival_prob=[0.7, 1.0]", "queue_coef=1", "deadline_s=[2, 6]",
        "cores=[4, 8]", "node_fail_rate=[0, 0.3]", "link_fail_rate=[0, 0.2]",
        "link_rate_mbps=[2, 8]", "task_size_kb=[500, 3000]"]
SEEDS = [21, 22, 23]


def _env_transitions(scenario, network, seeds, name, credit, layout=OBS_LAYOUT_VERSION):
    """Step OffloadVecEnv with the scheduler's own actions; collect (o, m, a, r, o', m', d)."""
    env = OffloadVecEnv(scenario, network, reward_credit=credit, obs_layout=layout)
    sched = make_scheduler(name)
    obs, mask = env.reset(seeds)
    rows = {k: [] for k in ("obs", "mask", "act", "rew", "next_obs", "next_mask", "done")}
    done = np.zeros(len(seeds), dtype=bool)
    while not done.all():
        if isinstance(sched, Rule):
            actions, _ = rule_actions(env.engine, sched)
        else:
            actions, _ = sched.decide(env.engine)
        next_obs, next_mask, reward, done, info = env.step(actions)
        for k, v in zip(rows, (obs, mask, actions, reward, next_obs, next_mask, done)):
            rows[k].append(v)
        obs, mask = next_obs, next_mask
    out = {k: np.stack(v, axis=1) for k, v in rows.items()}  # (B, T, ...)
    out["episode_rewards"] = info["episode_rewards"]
    out["node_rewards"] = info["node_rewards"]
    return out


@pytest.mark.parametrize("name", ["ratc", "rda", "random", "central", "spread"])
@pytest.mark.parametrize("credit", ["slot", "decision", "node"])
@pytest.mark.parametrize("layout", [OBS_LAYOUT_VERSION, OBS_LAYOUT_V2])
def test_rebuilt_transitions_equal_the_environment_exactly(name, credit, layout):
    scenario = load_scenario("paper-sim", BUSY)
    network = sample_network(scenario, 1)
    logs = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, SEEDS),
                                     make_scheduler(name))
    tr = rebuild_transitions(scenario, network, logs, reward_credit=credit, obs_layout=layout)
    ref = _env_transitions(scenario, network, SEEDS, name, credit, layout)
    assert np.array_equal(tr.observations, ref["obs"])
    assert np.array_equal(tr.action_masks, ref["mask"])
    assert np.array_equal(tr.actions, ref["act"])
    assert np.array_equal(tr.next_observations, ref["next_obs"])
    assert np.array_equal(tr.next_action_masks, ref["next_mask"])
    assert np.array_equal(tr.terminals, ref["done"])
    assert tr.observations.dtype == np.float32 and tr.rewards.dtype == np.float32
    if credit == "node":  # each node's own outcome, at its decision slot
        assert np.array_equal(tr.rewards, ref["node_rewards"].astype(np.float32))
        for log, r in zip(logs, tr.rewards):
            assert r.sum() == 2 * log.successes - log.tasks
    else:
        # Slot credit: the env's per-step rewards; decision credit: given at the end. Every
        # node gets the team reward.
        team = tr.rewards[..., 0]
        assert (tr.rewards == team[..., None]).all()
        assert np.array_equal(team, ref["episode_rewards"].astype(np.float32))
        if credit == "slot":
            assert np.array_equal(team, ref["rew"])
        # Rewards sum to successes minus failures under both credits.
        for log, r in zip(logs, team):
            assert r.sum() == 2 * log.successes - log.tasks
    assert tr.terminals[:, -1].all() and not tr.terminals[:, :-1].any()


def test_true_mask_is_kept_when_a_heuristic_chose_a_masked_action():
    scenario = load_scenario("paper-sim", BUSY)
    network = sample_network(scenario, 1)
    logs = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, SEEDS),
                                     make_scheduler("ratc"))
    tr = rebuild_transitions(scenario, network, logs)
    chosen_allowed = np.take_along_axis(tr.action_masks, tr.actions[..., None], axis=-1)[..., 0]
    masked = np.argwhere(~chosen_allowed)
    assert masked.size > 0, "the scenario should make RATC send tasks to overloaded nodes"
    for e, t, i in masked:
        a = tr.actions[e, t, i]
        log = logs[e]
        assert log.has_task[t, i] and a != i
        assert log.peer_overloaded[t, i, a]          # the flag RATC did not read
        assert log.dest[t, i] == a                   # the action is the logged one
        # The mask is the definition's, from the flags the node saw.
        expect = Observer(scenario, network).mask([i], [True], log.peer_overloaded[t, i][None])[0]
        assert np.array_equal(tr.action_masks[e, t, i], expect)


def test_reward_credit_on_a_hand_built_log():
    # T = 3 slots of 0.5 s, N = 2 nodes.
    log = EpisodeLog.empty(slots=3, nodes=2, episode_seed=0, episode_index=0)

    def task(t, i, outcome, end_s, dest=None):
        log.has_task[t, i] = True
        log.action[t, i] = log.dest[t, i] = i if dest is None else dest
        log.size_bytes[t, i], log.cycles[t, i], log.deadline_s[t, i] = 1e5, 1e8, 4.0
        log.outcome[t, i], log.end_s[t, i] = outcome, end_s

    task(0, 0, SUCCESS, 0.7)      # ends in slot 1
    task(0, 1, DROP, 0.2)         # ends in slot 0
    task(1, 0, EXEC_FAIL, 1.0)    # exactly on the boundary of slot 2: slot 2
    task(2, 1, SUCCESS, 5.0)      # after the last slot: counted in slot T-1 = 2
    task(2, 0, TRANS_FAIL, 1.2, dest=1)  # ends in slot 2
    log.validate()
    assert team_rewards(log.has_task, log.outcome, log.end_s, 0.5, "slot").tolist() == [-1.0, 1.0, -1.0]
    assert team_rewards(log.has_task, log.outcome, log.end_s, 0.5, "decision").tolist() == [0.0, -1.0, 0.0]
    assert end_slot(np.array([0.0, 0.49999, 0.5, 1.4999999999, 99.0]), 0.5, 3).tolist() == [0, 0, 1, 2, 2]
    with pytest.raises(ValueError, match="reward_credit"):
        team_rewards(log.has_task, log.outcome, log.end_s, 0.5, "episode")


def test_boundary_after_the_last_slot_has_no_task_and_only_the_no_task_action():
    scenario = load_scenario("paper-sim", BUSY)
    network = sample_network(scenario, 1)
    logs = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, [5]),
                                     make_scheduler("ratc"))
    tr = rebuild_transitions(scenario, network, logs)
    n = scenario.nodes
    last_mask = tr.next_action_masks[0, -1]
    assert not last_mask[:, :n].any() and last_mask[:, n].all()
    assert np.all(tr.next_observations[0, -1][:, 3 * n + 3:] == 0)  # no task features
    # Inside the episode, o' of slot t is o of slot t+1.
    assert np.array_equal(tr.next_observations[0, :-1], tr.observations[0, 1:])
    assert np.array_equal(tr.next_action_masks[0, :-1], tr.action_masks[0, 1:])
