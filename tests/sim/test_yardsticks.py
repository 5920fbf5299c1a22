"""The yardsticks: the centralized references (``central`` and its greedy variants), the
contention-aware bound (an LP per episode) and the per-task bound, against exhaustive search over
open-loop plans on tiny instances and against every scheduler on small random scenarios."""

import dataclasses
import math

import numpy as np
import pytest

from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.core.seeds import VALIDATION
from o2o.sim import SCHEDULERS, make_scheduler
from o2o.sim.bound import episode_lp_bound, episode_task_bound, lp_bound_one, mean_bounds
from o2o.core.outcomes import SUCCESS
from o2o.sim.central import (TIE_TASKS, Central, GreedyCentral, InformedSlackReliable, redraw_clocks,
                             task_reliability)
from o2o.sim.exhaustive import plan_successes, scheduler_successes, with_clocks
from o2o.sim.rollout import rollout, simulate
from tests.helpers import hand_episode, hand_network, hand_scenario

TINY = ["nodes=3", "slots=3", "cores=[4, 8]", "complexity=[200, 800]", "deadline_s=2.0"]
CENTRALS = ("central", "central-reliable", "central-earliest")


def tiny_instances(overrides, count, first_seed=0, max_tasks=5):
    scenario = load_scenario("paper-sim", TINY + overrides)
    seed = first_seed
    while count:
        network = sample_network(scenario, seed)
        episodes = sample_episodes(scenario, network, [seed])
        seed += 1
        if 2 <= episodes.has_task.sum() <= max_tasks:
            count -= 1
            yield scenario, network, episodes


# ---------------------------------------------------------------- the greedy rules, by hand
def test_greedy_variants_pick_the_most_reliable_or_the_earliest_feasible_node():
    # Node 0 is fast and unreliable (1 s, alpha 0.3), node 1 slow and reliable (2 s, alpha 0);
    # the task of node 0 (1 byte, link 1e9 B/s) meets its 4 s deadline on both.
    sc = hand_scenario(2, 1)
    net = hand_network([2e9, 1e9], 1e9, alpha=[0.3, 0.0])
    ep = hand_episode(1, 2, {(0, 0): (1.0, 2e9)})
    assert rollout(sc, net, ep, make_scheduler("central-reliable")).actions[0, 0, 0] == 1
    assert rollout(sc, net, ep, make_scheduler("central-earliest")).actions[0, 0, 0] == 0
    # An intermediate weight trades them: rel 0.741 vs 1.0, waits 1 s vs 2 s (of d = 4 s).
    assert rollout(sc, net, ep, GreedyCentral(1.0)).actions[0, 0, 0] == 1    # 0.741 - 0.25 < 1 - 0.5
    assert rollout(sc, net, ep, GreedyCentral(2.0)).actions[0, 0, 0] == 0    # 0.741 - 0.5 > 1 - 1


def test_central_runs_each_episode_with_the_rule_of_the_highest_expected_successes():
    sc = load_scenario("paper-sim", ["nodes=4", "slots=12", "arrival_prob=[0.5, 1.0]"])
    net = sample_network(sc, 3)
    seeds = VALIDATION.take(4)
    central = Central(weights=(0.0, 0.3, math.inf), orders=(False, True))
    got = simulate(sc, net, seeds, central)["success_rate"]
    # Each rule alone, failure-free, each success weighted by its reliability: the score.
    episodes = sample_episodes(sc, net, seeds)
    free = dataclasses.replace(episodes, tx_fail_clock=np.full_like(episodes.tx_fail_clock, np.inf),
                               exec_fail_clock=np.full_like(episodes.exec_fail_clock, np.inf))
    score, real = [], []
    for weight, largest_first in central.grid:
        rule = GreedyCentral(weight, largest_first=largest_first)
        engine = rollout(sc, net, free, rule).engine
        score.append(np.where(engine.outcome == SUCCESS, task_reliability(net, free, engine.dest), 0).sum(axis=(1, 2)))
        real.append(simulate(sc, net, seeds, GreedyCentral(weight, largest_first=largest_first))["success_rate"])
    score, real = np.array(score), np.array(real)
    for b in range(len(seeds)):
        near = np.flatnonzero(score[:, b] >= score[:, b].max() - TIE_TASKS)
        assert got[b] == pytest.approx(real[near[0], b], abs=1e-12)   # the first listed of the near-best
    assert sum(central.chosen["rule_taken"].values()) == central.chosen["episodes"] == len(seeds)
    # The greedy variants are listed first, so they win the near ties.
    assert central.grid[:2] == [(0.0, False), (math.inf, False)]


def test_redrawn_clocks_keep_the_tasks_and_are_reproducible_and_independent_of_the_real_ones():
    sc = load_scenario("paper-sim", ["nodes=4", "slots=12"])
    net = sample_network(sc, 3)
    episodes = sample_episodes(sc, net, VALIDATION.take(2))
    a, b = redraw_clocks(episodes, 3), redraw_clocks(episodes, 3)
    assert a.batch == 6 and np.array_equal(a.seeds, np.repeat(episodes.seeds, 3))
    for field in ("has_task", "size_bytes", "cycles", "deadline_s"):
        assert np.array_equal(getattr(a, field), np.repeat(getattr(episodes, field), 3, axis=0))
    assert np.array_equal(a.exec_fail_clock, b.exec_fail_clock)
    assert not np.isin(a.exec_fail_clock, episodes.exec_fail_clock).any()
    assert not np.array_equal(a.tx_fail_clock[0], a.tx_fail_clock[1])
    # Scored on redrawn clocks instead of the failure-free model: still one rule per episode.
    central = Central(clock_draws=2, weights=(0.0, math.inf), orders=(False,))
    simulate(sc, net, VALIDATION.take(2), central)
    assert central.chosen["clock_draws"] == 2 and central.chosen["episodes"] == 2
    with pytest.raises(ValueError, match="clock_draws"):
        Central(clock_draws=-1)


# ---------------------------------------------------------------- the LP bound, by hand
@pytest.mark.parametrize("alpha, expected", [
    (0.0, 4 / 3),                      # capacity binds: 1.5 (w_A + w_B) <= 2 s
    (0.4, 2 * math.exp(-0.6)),         # reliability binds: w <= exp(-0.4 * 1.5) for each task
])
def test_lp_bound_of_two_tasks_competing_for_one_slow_node(alpha, expected):
    # Two tasks (nodes 0 and 1, slot 0) of 1.5e9 cycles, deadline 2 s. Node 0 runs one in 1.5 s;
    # node 1 (1 MHz) can run neither. Alone, each meets its deadline on node 0; together at most
    # one does. bound-task counts both (times their reliability).
    sc = hand_scenario(2, 1, deadline_s=2.0)
    net = hand_network([1e9, 1e6], 1e12, alpha=[alpha, 0.0])
    ep = hand_episode(1, 2, {(0, 0): (1.0, 1.5e9, 2.0), (0, 1): (1.0, 1.5e9, 2.0)})
    successes, tasks = lp_bound_one(sc, net, ep, 0)
    assert tasks == 2
    assert successes == pytest.approx(expected, rel=1e-6)
    assert episode_task_bound(net, ep)[0] == pytest.approx(math.exp(-1.5 * alpha))
    # The episode's failure clocks never run out: the best plan gets one success.
    _, plan = plan_successes(sc, net, ep)
    assert plan.max() == 1


def test_lp_bound_charges_a_busy_link():
    # Three tasks of node 0 in slots 0-2 (slot 0.5 s) can only run on node 1 (node 0 is 1 MHz);
    # each needs 1 s on the link 0 -> 1 (1e6 bytes at 1e6 B/s) and 0.1 s of node 1, deadline 1.6 s.
    # Their transmission windows [a, a + 1.5] all lie in [0, 2.5] s: w0 + w1 + w2 <= 2.5. Two of
    # them lie in a 2 s window ([0, 2], [0.5, 2.5]): w <= 1 already satisfies that; node 1's
    # 0.1 s of work per task never binds.
    sc = hand_scenario(2, 3, deadline_s=1.6)
    net = hand_network([1e6, 1e9], 1e6)
    ep = hand_episode(3, 2, {(t, 0): (1e6, 1e8, 1.6) for t in range(3)})
    successes, _ = lp_bound_one(sc, net, ep, 0)
    assert successes == pytest.approx(2.5, rel=1e-6)
    assert episode_task_bound(net, ep)[0] == pytest.approx(1.0)
    # The link sends one at a time: the third task reaches node 1 at 3 s, after its 2.6 s deadline.
    _, plan = plan_successes(sc, net, ep)
    assert plan.max() == 2


# ---------------------------------------------------------------- exhaustive search
def test_deterministic_tiny_instances_central_near_the_optimum_and_bound_above_it():
    gaps = []
    for sc, net, ep in tiny_instances(["node_fail_rate=[0, 0]", "link_fail_rate=[0, 0]"], 12):
        _, successes = plan_successes(sc, net, ep)
        optimum = successes.max()
        lp, tasks = lp_bound_one(sc, net, ep, 0)
        assert optimum <= lp + 1e-6 <= episode_task_bound(net, ep)[0] * tasks + 2e-6
        for name in CENTRALS:
            got = scheduler_successes(sc, net, ep, make_scheduler(name))[0]
            # central's own decisions are one of the plans: it cannot beat the best one.
            assert got <= optimum
            if name == "central":
                gaps.append(optimum - got)
    # Measured (scripts/central_vs_exhaustive.py): central reaches the optimum on all 200
    # instances there; without failures its score is the exact success count of each rule.
    assert np.mean(np.asarray(gaps) == 0) >= 0.9, gaps


def test_with_failures_no_scheduler_beats_the_bound_in_expectation():
    rng = np.random.default_rng(7)
    draws = 128
    for sc, net, ep in tiny_instances(["node_fail_rate=[0, 0.3]", "link_fail_rate=[0, 0.1]"], 6, first_seed=100):
        lp, _ = lp_bound_one(sc, net, ep, 0)
        batch = with_clocks(ep, rng, draws)
        # The plan chosen on other draws, measured on these (no selection bias), and every central.
        _, chosen_on = plan_successes(sc, net, with_clocks(ep, rng, draws))
        _, successes = plan_successes(sc, net, batch)
        samples = {"best plan": successes[np.argmax(chosen_on.mean(axis=1))]}
        for name in CENTRALS:
            samples[name] = scheduler_successes(sc, net, batch, make_scheduler(name))
        for name, x in samples.items():
            # Tolerance: 3 standard errors of the mean over the draws.
            assert x.mean() <= lp + 3 * x.std(ddof=1) / np.sqrt(draws) + 1e-9, (name, x.mean(), lp)


# ---------------------------------------------------------------- every scheduler, random scenarios
@pytest.mark.parametrize("overrides", [["nodes=5"], ["nodes=4", "arrival_prob=[0, 0.6]"],
                                       ["nodes=5", "task_size_kb=[1000, 12000]"],
                                       ["nodes=4", "node_fail_rate=[0, 0.3]", "cores=[4, 8]"]])
def test_no_scheduler_exceeds_the_bound_and_the_bound_is_below_bound_task(overrides):
    sc = load_scenario("paper-sim", ["slots=30", *overrides])
    net = sample_network(sc, 0)
    seeds = list(range(1_000_000, 1_000_012))
    episodes = sample_episodes(sc, net, seeds)
    lp = episode_lp_bound(sc, net, episodes)
    task = episode_task_bound(net, episodes)
    assert np.all(lp <= task + 1e-9)
    assert mean_bounds(sc, net, seeds)["bound"] == pytest.approx(lp.mean())
    # Means over 12 episodes; a scheduler's episode rate may exceed the episode's bound by luck
    # of its failure clocks, so the tolerance is 2 standard errors of its paired excess.
    for name in SCHEDULERS:
        rate = simulate(sc, net, seeds, make_scheduler(name))["success_rate"]
        excess = rate - lp
        assert excess.mean() <= 2 * excess.std(ddof=1) / np.sqrt(len(seeds)), (name, rate.mean(), lp.mean())


def test_the_centralized_references_refuse_parameters():
    from o2o.core.errors import UserError
    from o2o.sim import make_scheduler

    for name in ("central", "central-reliable", "central-earliest"):
        with pytest.raises(UserError, match="takes no parameters"):
            make_scheduler(name, {"local_margin": 0.5})
        assert make_scheduler(name).name == name


def test_greedy_placed_alone_does_not_see_the_other_tasks_of_its_slot():
    # Nodes 0 and 1 each have a task of 3e9 cycles: 1.5 s on their own 2 GHz, 1 s on node 2's
    # 3 GHz. Node 0 places first and takes node 2; seeing that, node 1 would finish there at 2 s
    # and keeps its task (1.5 s). Placed alone, it does not see node 0's task and also sends.
    sc = hand_scenario(3, 1)
    net = hand_network([2e9, 2e9, 3e9], 1e9)
    ep = hand_episode(1, 3, {(0, 0): (1.0, 3e9), (0, 1): (1.0, 3e9)})
    assert rollout(sc, net, ep, make_scheduler("central-earliest")).actions[0, 0, :2].tolist() == [2, 1]
    alone = GreedyCentral(math.inf, sees_slot=False)
    assert rollout(sc, net, ep, alone).actions[0, 0, :2].tolist() == [2, 2]


def test_greedy_blind_to_the_wire_sees_only_its_own_sends():
    # Slot 0: node 0 sends 0.8 MB (0.8 s at 1 MB/s) of 3e9 cycles to node 2 (3 GHz): it reaches
    # node 2 at 0.8 s and runs to 1.8 s. Slot 1 (0.5 s): node 1's task (0.4 MB, 3e9 cycles)
    # would reach node 2 at 0.9 s, behind it, and finish at 2.8 s; kept on node 1 (2 GHz) it
    # finishes at 2.0 s. Blind to node 0's send, node 1 expects node 2 free: 1.9 s.
    sc = hand_scenario(3, 2)
    net = hand_network([1e9, 2e9, 3e9], 1e6)
    ep = hand_episode(2, 3, {(0, 0): (0.8e6, 3e9), (1, 1): (0.4e6, 3e9)})
    seeing = rollout(sc, net, ep, make_scheduler("central-earliest")).actions[0]
    assert (seeing[0, 0], seeing[1, 1]) == (2, 1)
    blind = rollout(sc, net, ep, GreedyCentral(math.inf, sees_wire=False)).actions[0]
    assert (blind[0, 0], blind[1, 1]) == (2, 2)
    # Its own send it still sees: node 0's second task (slot 1) would reach node 2 at 1.2 s,
    # behind its first, and finish at 2.8 s; node 1 finishes it at 0.9 + 1.5 = 2.4 s (without
    # its first task in view, node 2 would look like 2.2 s).
    ep2 = hand_episode(2, 3, {(0, 0): (0.8e6, 3e9), (1, 0): (0.4e6, 3e9)})
    for rule in (make_scheduler("central-earliest"), GreedyCentral(math.inf, sees_wire=False)):
        assert rollout(sc, net, ep2, rule).actions[0, 1, 0] == 1


@pytest.mark.parametrize("u, params, expected", [
    # Node 0's task (3e9 cycles, d = 4 s) completes in 3 s at home, 1.5 s on node 1, 1 s on node
    # 2; slack / d = 0.25, 0.625, 0.75, so the draw's CDF is 0.154, 0.538, 1.
    (0.10, {}, 0), (0.30, {}, 1), (0.90, {}, 2),
    (0.90, {"local_margin": 0.8}, 0),     # 3 s <= 0.8 d: kept at home whatever the draw
    (0.10, {"peer_margin": 0.3}, 2),      # only node 2 completes within 0.3 d
    (0.10, {"slack_power": 0.0}, 0), (0.40, {"slack_power": 0.0}, 1),   # uniform over the three
])
def test_informed_slack_reliable_draws_over_exact_completion_times(u, params, expected):
    sc = hand_scenario(3, 1)
    net = hand_network([1e9, 2e9, 3e9], 1e9)
    ep = hand_episode(1, 3, {(0, 0): (1.0, 3e9)})
    ep.sched_u[0, 0, 0, 0] = u
    rule = InformedSlackReliable(**{"local_margin": 0.5, "peer_margin": 0.9, **params})
    assert rollout(sc, net, ep, rule).actions[0, 0, 0] == expected


def test_stratified_draws_spread_each_slots_uniforms_over_the_nodes(monkeypatch):
    # scripts/coordination_value.py: the rule's uniforms of one slot, shifted by one shared U_t
    # and spaced 1/N apart over a shared permutation of the nodes; the other uniforms untouched.
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "scripts"))
    from coordination_value import stratified
    sc = load_scenario("paper-sim", ["nodes=5", "slots=400"])
    net = sample_network(sc, 0)
    episodes = sample_episodes(sc, net, [3, 4])
    out = stratified(episodes)
    assert np.array_equal(out.sched_u[..., 1:], episodes.sched_u[..., 1:])
    u = np.sort(out.sched_u[..., 0], axis=-1)
    gaps = np.diff(np.concatenate([u, u[..., :1] + 1.0], axis=-1), axis=-1)
    assert np.allclose(gaps, 1 / 5)
    assert np.all((out.sched_u[..., 0] >= 0) & (out.sched_u[..., 0] < 1))
    assert abs(out.sched_u[..., 0].mean() - 0.5) < 0.02            # each draw still uniform
    assert np.array_equal(stratified(episodes).sched_u, out.sched_u)  # reproducible


def test_informed_slack_reliable_refuses_parameters_outside_the_rules_bounds():
    with pytest.raises(ValueError, match="peer_margin must lie in"):
        InformedSlackReliable(peer_margin=np.array([0.9, 1.5]))
    with pytest.raises(ValueError, match="rel_power must lie in"):
        InformedSlackReliable(rel_power=-1.0)
