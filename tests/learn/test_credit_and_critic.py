"""Reward credits by hand, and the centralized critic's input, the same from the simulator and
from the task logs."""

import numpy as np
import pytest

from o2o.core.decpomdp import (
    OBS_LAYOUT_V2,
    central_columns,
    central_critic_input,
    node_rewards,
    rewards,
    team_rewards,
)
from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.outcomes import DROP, EMPTY, EXEC_FAIL, SUCCESS, TRANS_FAIL
from o2o.core.scenario import load_scenario
from o2o.logs.dataset import simulated_dataset
from o2o.logs.records import episode_logs_from_rollout
from o2o.logs.transitions import rebuild_transitions
from o2o.sim import make_scheduler
from o2o.sim.env import OffloadVecEnv
from o2o.sim.rollout import rule_actions

# T = 3 slots, N = 3 nodes. Slot 0: node 0 succeeds (ends in slot 2), node 2 is dropped (ends
# in slot 0). Slot 1: node 1 fails in execution (ends in slot 1). Slot 2: node 0 fails in
# transmission (ends after the last slot), node 2 succeeds (ends in slot 2).
HAS = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=bool)
OUT = np.array([[SUCCESS, EMPTY, DROP], [EMPTY, EXEC_FAIL, EMPTY], [TRANS_FAIL, EMPTY, SUCCESS]])
END = np.array([[2.2, np.nan, 0.3], [np.nan, 1.5, np.nan], [7.0, np.nan, 2.9]])
SLOT_S = 1.0


def test_node_credit_gives_each_node_its_own_outcome_at_its_decision():
    r = node_rewards(HAS, OUT)
    assert r.tolist() == [[1, 0, -1], [0, -1, 0], [-1, 0, 1]]
    assert rewards(HAS, OUT, END, SLOT_S, "node").tolist() == r.tolist()
    # Summed over the nodes it is the team reward credited to the decision's slot ...
    assert r.sum(axis=1).tolist() == team_rewards(HAS, OUT, END, SLOT_S, "decision").tolist() == [0, -1, 0]
    # ... and over everything, successes minus failures, as under every credit.
    assert r.sum() == team_rewards(HAS, OUT, END, SLOT_S, "slot").sum() == 2 * 2 - 5


def test_team_credits_by_hand_and_every_node_gets_them():
    # slot credit: slot 0 has the drop (-1), slot 1 the failure (-1), slot 2 the two ends in
    # slot 2 (+1 +1) and the outcome after the last slot (-1).
    assert team_rewards(HAS, OUT, END, SLOT_S, "slot").tolist() == [-1, -1, 1]
    per_node = rewards(HAS, OUT, END, SLOT_S, "slot")
    assert per_node.shape == (3, 3) and (per_node == [[-1], [-1], [1]]).all()
    with pytest.raises(ValueError):
        team_rewards(HAS, OUT, END, SLOT_S, "node")


def test_central_critic_input_by_hand():
    n, d = 2, 3 * 2 + 6
    slot = np.arange(n * d, dtype=np.float32).reshape(n, d)
    cols = central_columns(n)
    assert cols.tolist() == [n + 3, 3 * n + 3, 3 * n + 4, 3 * n + 5]
    x = central_critic_input(slot)
    shared = np.concatenate([slot[0, cols], slot[1, cols]])
    assert x.shape == (n, d + 4 * n)
    for i in range(n):
        assert x[i].tolist() == [*slot[i].tolist(), *shared.tolist()]


def test_central_critic_input_from_the_simulator_equals_the_one_from_logs():
    from o2o.learn.offline import central_critic_arrays
    from o2o.learn.online import critic_inputs

    sc = load_scenario("paper-sim", ["nodes=4", "slots=8"])
    net = sample_network(sc, 2)
    seeds = [5, 6]
    env = OffloadVecEnv(sc, net, reward_credit="node", obs_layout=OBS_LAYOUT_V2)
    obs, _ = env.reset(seeds)
    ratc = make_scheduler("ratc")
    collected = []
    while not env.engine.done:
        collected.append(critic_inputs(obs, "central"))   # what online PPO feeds its critic
        obs, *_ = env.step(rule_actions(env.engine, ratc)[0])
    sim = np.stack(collected, axis=1)                      # (B, T, N, D + 4N)
    logs = episode_logs_from_rollout(sc, net, sample_episodes(sc, net, seeds), ratc)
    tr = rebuild_transitions(sc, net, logs, "node", OBS_LAYOUT_V2)
    np.testing.assert_array_equal(central_critic_input(tr.observations), sim)
    # The offline learner's per-row critic input (data-set rows, slot by slot) is the same.
    data = simulated_dataset(sc, net, ratc, seeds, "node", obs_layout=OBS_LAYOUT_V2)
    rows = central_critic_arrays(data)["critic_observations"].numpy()
    np.testing.assert_array_equal(rows, sim.reshape(rows.shape))
