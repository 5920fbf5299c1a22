"""The counterfactual reward credit (``o2o.sim.harm``): hand-computed small cases, the full
engine run again without each task, and the same rewards from the simulator and the task logs."""

import dataclasses

import numpy as np
import pytest

from o2o.core.decpomdp import harm_weight, is_reward_credit, rewards
from o2o.core.episodes import sample_episodes
from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.outcomes import DROP, EXEC_FAIL, SUCCESS, outcome_feedback
from o2o.core.scenario import Scenario, load_scenario
from o2o.logs.records import episode_logs_from_rollout
from o2o.logs.transitions import rebuild_transitions
from o2o.sim import make_scheduler
from o2o.sim.engine import Engine
from o2o.sim.env import OffloadVecEnv
from o2o.sim.harm import counterfactual_rewards, engine_harm
from o2o.sim.rollout import rule_actions
from tests.helpers import hand_episode, hand_network, hand_scenario

GHZ = 1e9
MB = 1e6  # bytes/s of every link in these cases


def run(capacity, slots, tasks, dests, alpha=None, clocks=None):
    """One hand episode: task (slot, node) -> (size_bytes, cycles[, deadline_s]) goes to
    dests[(slot, node)]; ``clocks`` sets exec failure clocks (Exp(1) draws) per (slot, node).
    Returns the finished engine and H (T, N)."""
    n = len(capacity)
    sc = hand_scenario(n, slots)
    net = hand_network(capacity, MB, alpha=alpha)
    ep = hand_episode(slots, n, tasks)
    for (t, i), clock in (clocks or {}).items():
        ep.exec_fail_clock[0, t, i] = clock
    engine = Engine(sc, net, ep)
    while not engine.done:
        a = np.full((1, n), n)
        for (t, i), j in dests.items():
            if t == engine.t:
                a[0, i] = j
        engine.step(a)
    return engine, engine_harm(engine)[0]


def credit(engine, harm, w):
    own = np.where(engine.ep.has_task[0], outcome_feedback(engine.outcome[0]), 0.0)
    return counterfactual_rewards(own, harm, w)


def test_credit_names():
    assert harm_weight("counterfactual") == 1.0 and harm_weight("counterfactual-w0.5") == 0.5
    assert harm_weight("node") is None and harm_weight("counterfactual-w") is None
    assert is_reward_credit("counterfactual-w0.25") and not is_reward_credit("counterfactual-wx")
    with pytest.raises(ValueError, match="simulator"):  # not from the outcomes alone
        rewards(np.ones((1, 2), bool), np.full((1, 2), SUCCESS), np.zeros((1, 2)), 0.5, "counterfactual")


def test_a_long_local_task_that_makes_a_later_one_miss_its_deadline():
    """Node 0 (1 GHz), slots of 0.5 s, every task local.

    A = (0, 0): 2.0 Gcycles, runs 0.0-2.0, SUCCESS.
    B = (1, 0): 1.0 Gcycles (1.0 s), arrives 0.5, deadline 2.0 (due 2.5): at the head at 2.0,
        2.0 + 1.0 > 2.5, DROPPED at 2.0 (uses no CPU).
    C = (2, 0): 0.4 Gcycles, arrives 1.0, starts 2.0, ends 2.4, SUCCESS.
    Without A: B runs 0.5-1.5 (SUCCESS, +2), C runs 1.5-1.9 (SUCCESS, no change): H_A = 2.
    Without B (dropped: used nothing): H_B = 0. Without C (nothing after it): H_C = 0.
    r = own - w H: w = 1: A 1 - 2 = -1, B -1, C +1; w = 0.5: A 0.
    """
    e, h = run([GHZ, GHZ], 4, {(0, 0): (1, 2.0 * GHZ), (1, 0): (1, 1.0 * GHZ, 2.0), (2, 0): (1, 0.4 * GHZ)},
               {(0, 0): 0, (1, 0): 0, (2, 0): 0})
    assert [e.outcome[0, t, 0] for t in range(3)] == [SUCCESS, DROP, SUCCESS]
    assert h[:, 0].tolist() == [2, 0, 0, 0] and not h[:, 1].any()
    assert credit(e, h, 1.0)[:3, 0].tolist() == [-1, -1, 1]
    assert credit(e, h, 0.5)[:3, 0].tolist() == [0, -1, 1]


def test_no_harm_when_the_queue_empties_before_the_next_task_arrives():
    """Node 0 (1 GHz): A = (0, 0) 0.3 Gcycles runs 0.0-0.3; B = (1, 0) arrives 0.5, finds the
    node idle, runs 0.5-1.3. A's busy period ended before B came: H_A = H_B = 0, and the
    counterfactual credit is the node credit (+1, +1)."""
    e, h = run([GHZ, GHZ], 3, {(0, 0): (1, 0.3 * GHZ), (1, 0): (1, 0.8 * GHZ)}, {(0, 0): 0, (1, 0): 0})
    assert not h.any()
    assert credit(e, h, 1.0)[:2, 0].tolist() == [1, 1]


def test_three_nodes_a_fast_node_keeping_a_long_task_drops_a_task_sent_to_it():
    """Nodes 0, 2 at 1 GHz, node 1 at 2 GHz, links 1 MB/s.

    A = (0, 1) kept by node 1: 2.4 Gcycles = 1.2 s, runs 0.0-1.2, SUCCESS.
    B = (0, 0) sent to 1: 0.5 MB (on the wire 0.0-0.5), 1.0 Gcycles = 0.5 s at node 1, deadline
        1.5: at the head at 1.2, 1.2 + 0.5 > 1.5, DROPPED at 1.2.
    C = (0, 2) sent to 1: 0.8 MB (0.0-0.8), 0.4 Gcycles = 0.2 s, starts 1.2, ends 1.4, SUCCESS.
    Without A: B runs 0.5-1.0 (SUCCESS, +2), C arrives 0.8, runs 1.0-1.2 (SUCCESS): H_A = 2.
    H_B = 0 (dropped; its link 0 -> 1 carried nothing else), H_C = 0 (last in the queue).
    Node credit: A +1, B -1, C +1. Counterfactual, w = 1: A -1, B -1, C +1.
    """
    e, h = run([GHZ, 2 * GHZ, GHZ], 2,
               {(0, 1): (1, 2.4 * GHZ), (0, 0): (0.5 * MB, 1.0 * GHZ, 1.5), (0, 2): (0.8 * MB, 0.4 * GHZ)},
               {(0, 1): 1, (0, 0): 1, (0, 2): 1})
    assert e.outcome[0, 0].tolist() == [DROP, SUCCESS, SUCCESS]
    assert e.end_s[0, 0].tolist() == pytest.approx([1.2, 1.2, 1.4])
    assert h[0].tolist() == [0, 2, 0]
    assert credit(e, h, 1.0)[0].tolist() == [-1, -1, 1]


def test_the_send_queue_and_its_cascade_into_the_execution_queue():
    """Node 0 (1 GHz) sends to node 1 (2 GHz) over 1 MB/s.

    A = (0, 0) -> 1: 1.0 MB, on the wire 0.0-1.0; 0.2 Gcycles = 0.1 s, runs 1.0-1.1, SUCCESS.
    B = (1, 0) -> 1: 0.5 MB, 0.4 Gcycles (0.2 s), deadline 1.0 (due 1.5): the link is free at
        1.0, 1.0 + 0.5 + 0.2 > 1.5: DROPPED at the head of the send queue at 1.0.
    D = (2, 1) kept by node 1: 0.6 Gcycles (0.3 s), arrives 1.0 (after A in FIFO order: same
        time, source 0 first), deadline 0.45 (due 1.45): runs 1.1-1.4, SUCCESS.
    Without A: B is sent 0.5-1.0 (0.5 + 0.5 + 0.2 = 1.2 <= 1.5) and runs 1.0-1.2 at node 1
    (SUCCESS, +2); D then starts 1.2, 1.2 + 0.3 > 1.45: DROPPED (-2). H_A = 2 - 2 = 0.
    H_B = 0 (dropped at the send queue), H_D = 0. Without D in the episode (same tasks, D
    absent) H_A = 2: the harm that reaches j through the link.
    """
    tasks = {(0, 0): (1.0 * MB, 0.2 * GHZ), (1, 0): (0.5 * MB, 0.4 * GHZ, 1.0), (2, 1): (1, 0.6 * GHZ, 0.45)}
    dests = {(0, 0): 1, (1, 0): 1, (2, 1): 1}
    e, h = run([GHZ, 2 * GHZ], 4, tasks, dests)
    assert [e.outcome[0, 0, 0], e.outcome[0, 1, 0], e.outcome[0, 2, 1]] == [SUCCESS, DROP, SUCCESS]
    assert np.isnan(e.exec_arrive_s[0, 1, 0])  # B never left node 0
    assert not h.any()
    assert credit(e, h, 1.0)[:3].tolist() == [[1, 0], [-1, 0], [0, 1]]
    del tasks[(2, 1)], dests[(2, 1)]
    e, h = run([GHZ, 2 * GHZ], 4, tasks, dests)
    assert h[:, 0].tolist() == [2, 0, 0, 0]
    assert credit(e, h, 1.0)[:2, 0].tolist() == [-1, -1]


def test_failure_clocks_are_the_episodes():
    """Node 0 (1 GHz), failure rate alpha = 1/s, every task local.

    A = (0, 0): 1.2 Gcycles (1.2 s), clock 0.8: fails after 0.8 s, EXECUTION FAILURE at 0.8.
    B = (1, 0): 0.9 Gcycles (0.9 s), arrives 0.5, deadline 1.1 (due 1.6): starts 0.8,
        0.8 + 0.9 > 1.6: DROPPED at 0.8.
    Without A: B runs 0.5-1.4 <= 1.6, SUCCESS (its clock is infinite): H_A = 2, r_A = -1 - 2 = -3
    (w = 1), -2 (w = 0.5).
    With B's clock 0.6 (< 0.9: B would fail if it ran) B fails without A too: H_A = 0.
    """
    tasks = {(0, 0): (1, 1.2 * GHZ), (1, 0): (1, 0.9 * GHZ, 1.1)}
    dests = {(0, 0): 0, (1, 0): 0}
    e, h = run([GHZ, GHZ], 3, tasks, dests, alpha=[1.0, 0.0], clocks={(0, 0): 0.8})
    assert [e.outcome[0, 0, 0], e.outcome[0, 1, 0]] == [EXEC_FAIL, DROP]
    assert e.end_s[0, 0, 0] == pytest.approx(0.8) and e.end_s[0, 1, 0] == pytest.approx(0.8)
    assert h[:, 0].tolist() == [2, 0, 0]
    assert credit(e, h, 1.0)[:2, 0].tolist() == [-3, -1]
    assert credit(e, h, 0.5)[:2, 0].tolist() == [-2, -1]
    e, h = run([GHZ, GHZ], 3, tasks, dests, alpha=[1.0, 0.0], clocks={(0, 0): 0.8, (1, 0): 0.6})
    assert not h.any()


def _run_engine(sc, net, ep, acts):
    e = Engine(sc, net, ep)
    for t in range(sc.slots):
        e.step(np.where(ep.has_task[:, t], acts[:, t], net.n))
    return e


@pytest.mark.parametrize("seed", range(6))
def test_harm_equals_the_whole_engine_run_again_without_the_task(seed):
    """H_x = sum over k != x of (outcome of k in the engine run without x) - (outcome of k),
    the other decisions the same: the replay of x's send queue and execution queue misses
    nothing (loaded queues, drops and both kinds of failure)."""
    sc = Scenario(name="busy", nodes=3, slots=16, arrival_prob=(0.6, 1.0), deadline_s=(2.0, 5.0),
                  task_size_kb=(200, 2000), node_fail_rate=(0, 0.5), link_fail_rate=(0, 0.5),
                  cores=(1, 2, 4), link_rate_mbps=(0.5, 3))
    net = sample_network(sc, seed)
    ep = sample_episodes(sc, net, [seed])
    acts = np.random.default_rng(seed).integers(0, sc.nodes, size=(1, sc.slots, sc.nodes))
    e = _run_engine(sc, net, ep, acts)
    h = engine_harm(e)[0]
    fb = outcome_feedback(e.outcome[0])
    for t, i in zip(*np.nonzero(ep.has_task[0])):
        has = ep.has_task.copy()
        has[0, t, i] = False
        without = outcome_feedback(_run_engine(sc, net, dataclasses.replace(ep, has_task=has), acts).outcome[0])
        assert h[t, i] == (without - fb).sum() + fb[t, i], (t, i)
    assert (h != 0).any()


BUSY = ["nodes=5", "slots=12", "arrival_prob=[0.7, 1.0]", "queue_coef=1", "deadline_s=[2, 6]",
        "cores=[4, 8]", "node_fail_rate=[0, 0.3]", "link_fail_rate=[0, 0.2]",
        "link_rate_mbps=[2, 8]", "task_size_kb=[500, 3000]"]


@pytest.mark.parametrize("credit_name", ["counterfactual", "counterfactual-w0.5"])
def test_the_same_rewards_from_the_simulator_and_from_the_task_logs(credit_name):
    scenario = load_scenario("paper-sim", BUSY)
    network = sample_network(scenario, 1)
    seeds = [21, 22, 23]
    logs = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, seeds),
                                     make_scheduler("ratc"))
    tr = rebuild_transitions(scenario, network, logs, reward_credit=credit_name)
    env = OffloadVecEnv(scenario, network, reward_credit=credit_name)
    env.reset(seeds)
    rule = make_scheduler("ratc")
    while not env.engine.done:
        _, _, reward, _, info = env.step(rule_actions(env.engine, rule)[0])
        assert not reward.any()  # known once the episode is drained
    w = harm_weight(credit_name)
    assert np.array_equal(info["credit_rewards"], info["node_rewards"] - w * info["harm"])
    assert info["harm"].any()
    assert np.array_equal(tr.rewards, info["credit_rewards"].astype(np.float32))


def test_a_log_the_simulator_does_not_reproduce_is_refused():
    scenario = load_scenario("paper-sim", BUSY)
    network = sample_network(scenario, 1)
    logs = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, [21]),
                                     make_scheduler("ratc"))
    log = logs[0]
    t, i = np.argwhere(log.outcome == SUCCESS)[0]
    log.outcome[t, i] = DROP   # what a testbed's measured times could give
    with pytest.raises(UserError, match="does not reproduce"):
        rebuild_transitions(scenario, network, [log], reward_credit="counterfactual")
    rebuild_transitions(scenario, network, [log], reward_credit="node")  # the node credit still works
    log.episode_seed = 99   # other tasks than the log's
    with pytest.raises(UserError, match="not those of episode seed"):
        rebuild_transitions(scenario, network, [log], reward_credit="counterfactual")


def test_settings_and_the_command_line_take_the_credit_and_its_weight():
    import argparse

    from o2o.cli.common import reward_credit_arg
    from o2o.learn.settings import learner_settings

    assert learner_settings("project", reward_credit="counterfactual-w0.5").reward_credit == "counterfactual-w0.5"
    assert learner_settings("project").reward_credit == "node"   # the default is unchanged
    with pytest.raises(UserError, match="counterfactual-w<w>"):
        learner_settings("project", reward_credit="counterfactual-wx")
    assert reward_credit_arg("counterfactual") == "counterfactual"
    with pytest.raises(argparse.ArgumentTypeError):
        reward_credit_arg("harm")
