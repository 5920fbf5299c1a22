"""Failure statistics (paper eqs. 3-5), determinism and the success bound."""

import numpy as np
import pytest

from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.outcomes import DROP, EXEC_FAIL, TRANS_FAIL
from o2o.core.scenario import load_scenario
from o2o.schedulers.heuristics import Rule
from o2o.sim import SCHEDULERS, episode_task_bound, make_scheduler
from o2o.sim.rollout import rollout, simulate


class NextNode(Rule):
    """Test rule: always offload to the next node, so every task is transmitted."""

    name = "next"
    reads = frozenset()

    def choose(self, view, probes):
        return (view.node + 1) % view.n


def failure_check(scenario, rule, outcome, stage_rate, stage_time):
    net = sample_network(scenario, 1)
    e = rollout(scenario, net, sample_episodes(scenario, net, range(30)), rule).engine
    has = e.ep.has_task
    assert not np.any(e.outcome == DROP), "the case is built so that nothing is dropped"
    p = 1.0 - np.exp(-stage_rate(e)[has] * stage_time(e)[has])
    expected, sigma = p.sum(), np.sqrt((p * (1 - p)).sum())
    observed = (e.outcome == outcome).sum()
    # 4 standard deviations: a false alarm about once in 16,000 runs (seeds are fixed anyway).
    assert abs(observed - expected) <= 4 * sigma, (observed, expected, sigma)
    assert has.sum() > 1000 and expected > 100


def test_execution_failures_follow_exp_minus_alpha_tc():
    sc = load_scenario("paper-sim", ["nodes=4", "slots=200", "arrival_prob=[0.1, 0.1]",
                                     "deadline_s=30", "cores=[4]", "task_size_kb=[1000, 3000]",
                                     "complexity=[800, 1600]", "node_fail_rate=[0.3, 0.3]",
                                     "link_fail_rate=[0, 0]"])
    j = np.arange(4)
    failure_check(sc, make_scheduler("local"), EXEC_FAIL,
                  lambda e: np.broadcast_to(e.net.node_fail_rate[j], e.ep.has_task.shape),
                  lambda e: e.exec_s)


def test_transmission_failures_follow_exp_minus_beta_tt():
    sc = load_scenario("paper-sim", ["nodes=4", "slots=200", "arrival_prob=[0.1, 0.1]",
                                     "deadline_s=30", "cores=[32]", "task_size_kb=[2000, 6000]",
                                     "complexity=[100, 200]", "node_fail_rate=[0, 0]",
                                     "link_rate_mbps=[10, 20]", "link_fail_rate=[0.3, 0.3]"])
    failure_check(sc, NextNode(), TRANS_FAIL,
                  lambda e: e.net.link_fail_rate[np.arange(4), (np.arange(4) + 1) % 4][None, None, :]
                  + np.zeros(e.ep.has_task.shape),
                  lambda e: e.tx_s)


def test_same_seeds_same_results_and_batches_do_not_matter():
    sc = load_scenario("paper-sim", ["nodes=6", "slots=30"])
    net = sample_network(sc, 3)
    for name in SCHEDULERS:
        a = rollout(sc, net, sample_episodes(sc, net, [5, 6, 7]), make_scheduler(name)).engine
        b = rollout(sc, net, sample_episodes(sc, net, [7]), make_scheduler(name)).engine
        c = rollout(sc, net, sample_episodes(sc, net, [5, 6, 7]), make_scheduler(name)).engine
        for field in ("outcome", "dest", "end_s", "exec_start_s", "tx_start_s"):
            np.testing.assert_array_equal(getattr(a, field), getattr(c, field))
            np.testing.assert_array_equal(getattr(a, field)[2], getattr(b, field)[0])


def test_different_seeds_give_different_episodes_and_networks():
    sc = load_scenario("paper-sim", ["nodes=6", "slots=30"])
    net = sample_network(sc, 3)
    ep = sample_episodes(sc, net, [1, 2])
    assert not np.array_equal(ep.has_task[0], ep.has_task[1])
    assert not np.array_equal(ep.size_bytes[0], ep.size_bytes[1])
    assert not np.array_equal(sample_network(sc, 3).link_rate_Bps, sample_network(sc, 4).link_rate_Bps)
    np.testing.assert_array_equal(sample_network(sc, 3).link_rate_Bps, net.link_rate_Bps)
    m1 = simulate(sc, net, [1, 2, 3], make_scheduler("ratc"))
    m2 = simulate(sc, net, [4, 5, 6], make_scheduler("ratc"))
    assert not np.array_equal(m1["success"], m2["success"])


@pytest.mark.parametrize("overrides", [[], ["arrival_prob=[0, 0.6]"], ["node_fail_rate=[0, 0.3]"],
                                       ["nodes=5", "task_size_kb=[1000, 10000]"]])
def test_bound_is_above_every_scheduler_on_average(overrides):
    sc = load_scenario("paper-sim", ["slots=50", *overrides])
    net = sample_network(sc, 0)
    seeds = range(8)
    bound = episode_task_bound(net, sample_episodes(sc, net, seeds)).mean()
    assert 0 < bound <= 1
    for name in SCHEDULERS:
        rate = simulate(sc, net, seeds, make_scheduler(name))["success_rate"].mean()
        assert rate <= bound, (name, rate, bound)


def test_bound_of_one_task_by_hand():
    from tests.helpers import hand_episode, hand_network

    # 1 MB at 1 MB/s to node 1 (beta 0.1), or 2 s locally on node 0 (alpha 0.2); deadline 1.5 s.
    net = hand_network([1e9, 4e9], 1e6, alpha=[0.2, 0.05], beta=[[0, 0.1], [0, 0]])
    ep = hand_episode(1, 2, {(0, 0): (1e6, 2e9, 1.5)})
    # Local: 2 s > 1.5 s, infeasible. Remote: 1 s + 0.5 s <= 1.5 s, rel = exp(-0.1 - 0.025).
    assert episode_task_bound(net, ep)[0] == pytest.approx(np.exp(-0.125))
