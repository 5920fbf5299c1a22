"""The Dec-POMDP view (paper IV-B): observations, masks, rewards, the vector env contract
and the PettingZoo adapter."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2o.core.decpomdp import obs_dim
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.sim import make_scheduler
from o2o.sim.env import OffloadParallelEnv, OffloadVecEnv
from o2o.sim.rollout import rule_actions


def play(env, seeds, scheduler="ratc"):
    """Step the env with a heuristic; yield (obs, mask, actions, reward, done, info) per step."""
    obs, mask = env.reset(seeds)
    rule = make_scheduler(scheduler)
    while True:
        actions, _ = rule.decide(env.engine) if hasattr(rule, "decide") else rule_actions(env.engine, rule)
        nobs, nmask, reward, done, info = env.step(actions)
        yield obs, mask, actions, reward, done, info
        obs, mask = nobs, nmask
        if done.all():
            return


@settings(max_examples=15, deadline=None)
@given(nodes=st.integers(2, 6), load=st.floats(0.2, 1.0), sched=st.sampled_from(["ratc", "random", "esf"]),
       seed=st.integers(0, 1000))
def test_observations_in_unit_box_and_masks_follow_the_spec(nodes, load, sched, seed):
    sc = load_scenario("paper-sim", [f"nodes={nodes}", "slots=25", f"arrival_prob=[0, {load}]",
                                     "queue_coef=0.5"])
    net = sample_network(sc, seed)
    env = OffloadVecEnv(sc, net)
    for obs, mask, actions, reward, done, info in play(env, [seed, seed + 1], sched):
        assert obs.shape == (2, nodes, obs_dim(nodes)) and obs.dtype == np.float32
        assert obs.min() >= 0.0 and obs.max() <= 1.0
        has = obs[..., -3] > 0  # the task's size is part of the observation
        # No task: only the no-task action.
        assert np.all(mask[~has][:, :nodes] == False) and np.all(mask[~has][:, nodes])  # noqa: E712
        # A task: no-task masked, itself always allowed.
        assert not mask[has][:, nodes].any()
        node = np.broadcast_to(np.arange(nodes), has.shape)
        assert np.all(mask[has, node[has]])
        np.testing.assert_array_equal(obs[..., :nodes], np.broadcast_to(np.eye(nodes), obs[..., :nodes].shape))
    assert done.all()


def test_mask_masks_exactly_the_overloaded_peers():
    sc = load_scenario("paper-sim", ["nodes=4", "slots=40", "arrival_prob=[0.9, 1]", "queue_coef=0.3"])
    net = sample_network(sc, 0)
    env = OffloadVecEnv(sc, net)
    obs, mask = env.reset([0])
    seen_masked = False
    for _ in range(39):
        state = env.engine.node_state()
        has = env.engine.ep.has_task[0, env.engine.t]
        for i in np.flatnonzero(has):
            expected = ~state.overloaded[0].copy()
            expected[i] = True
            np.testing.assert_array_equal(mask[0, i, :4], expected)
            seen_masked |= not expected.all()
        actions = np.where(has, np.arange(4), 4)[None]
        obs, mask, *_ = env.step(actions)
    assert seen_masked, "the case should overload some node"


@pytest.mark.parametrize("credit", ["slot", "decision"])
def test_team_rewards_sum_to_outcomes(credit):
    sc = load_scenario("paper-sim", ["nodes=5", "slots=30"])
    net = sample_network(sc, 2)
    env = OffloadVecEnv(sc, net, reward_credit=credit)
    steps = list(play(env, [0, 1, 2]))
    info = steps[-1][5]
    m = info["metrics"]
    per_slot = info["episode_rewards"]
    assert per_slot.shape == (3, 30)
    np.testing.assert_allclose(per_slot.sum(axis=1), 2 * m["success"] - m["tasks"])
    returned = np.stack([s[3] for s in steps], axis=1)
    if credit == "slot":
        np.testing.assert_allclose(returned, per_slot)
    else:
        assert not returned.any()  # known only at the end, handed over in info
    assert [bool(s[4].all()) for s in steps] == [False] * 29 + [True]


def test_vector_env_contract_errors():
    sc = load_scenario("paper-sim", ["nodes=3", "slots=2"])
    env = OffloadVecEnv(sc, sample_network(sc, 0))
    with pytest.raises(RuntimeError):
        env.step(np.zeros((1, 3), int))
    obs, mask = env.reset([0])
    has = env.engine.ep.has_task[0, 0]
    with pytest.raises(ValueError):
        env.step(np.full((2, 3), 3))
    bad = np.where(has, 3, 0)[None]  # the no-task action for a task, a destination for none
    with pytest.raises(ValueError):
        env.step(bad)
    env.step(np.where(has, 0, 3)[None])
    env.step(np.where(env.engine.ep.has_task[0, 1], 0, 3)[None])
    with pytest.raises(RuntimeError):
        env.step(np.full((1, 3), 3))
    with pytest.raises(ValueError):
        OffloadVecEnv(sc, sample_network(sc, 0), reward_credit="later")


def test_pettingzoo_parallel_api():
    from pettingzoo.test import parallel_api_test

    sc = load_scenario("paper-sim", ["nodes=4", "slots=15"])
    parallel_api_test(OffloadParallelEnv(sc, sample_network(sc, 0)), num_cycles=60)


def test_pettingzoo_state_api():
    # PettingZoo's state checks; its stepping one (test_state) samples actions without the
    # action mask, which this env refuses, so the stepping is checked in the next test.
    from pettingzoo.test.state_test import test_parallel_env, test_state_space
    from pettingzoo.utils.conversions import parallel_to_aec

    sc = load_scenario("paper-sim", ["nodes=4", "slots=15"])
    net = sample_network(sc, 0)
    test_state_space(parallel_to_aec(OffloadParallelEnv(sc, net)))
    test_parallel_env(OffloadParallelEnv(sc, net))


def test_pettingzoo_state_is_the_centralized_critics_global_state():
    """state() is what the centralized critic of online training reads beside a node's own
    observation (paper: centralized training, decentralized execution), on every step."""
    from o2o.learn.online import critic_inputs

    sc = load_scenario("paper-sim", ["nodes=5", "slots=12", "arrival_prob=[0.5,0.9]"])
    pz = OffloadParallelEnv(sc, sample_network(sc, 3))
    assert pz.state_space.shape == (4 * 5,)
    rng = np.random.default_rng(0)
    obs, _ = pz.reset(seed=11)
    steps, busy_states = 0, 0
    while True:
        own = np.stack([obs[a]["observation"] for a in pz.possible_agents])
        state = pz.state()
        assert pz.state_space.contains(state)
        critic = critic_inputs(own, "central")                     # (N, D + 4N)
        np.testing.assert_array_equal(critic, np.concatenate([own, np.tile(state, (5, 1))], 1))
        busy_states += bool(state.any())
        if not pz.agents:
            break
        acts = {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in pz.agents}
        obs, *_ = pz.step(acts)
        steps += 1
    assert steps == 12 and busy_states >= 6  # the state carries tasks and queues, not zeros


def test_pettingzoo_episode_matches_vector_env():
    sc = load_scenario("paper-sim", ["nodes=4", "slots=15"])
    net = sample_network(sc, 0)
    pz = OffloadParallelEnv(sc, net)
    vec = OffloadVecEnv(sc, net)
    obs, _ = pz.reset(seed=7)
    vobs, vmask = vec.reset([7])
    total = 0.0
    while pz.agents:
        np.testing.assert_array_equal(np.stack([obs[a]["observation"] for a in pz.possible_agents]), vobs[0])
        acts = {a: int(np.flatnonzero(obs[a]["action_mask"])[0]) for a in pz.agents}
        obs, rew, term, trunc, _ = pz.step(acts)
        vobs, vmask, vr, vd, _ = vec.step(np.array([[acts[a] for a in pz.possible_agents]]))
        assert rew["node_0"] == vr[0]
        total += rew["node_0"]
    assert all(term.values())


def test_pettingzoo_speed_runs_whole_episodes_with_masked_choices():
    from o2o.learn.speed import pettingzoo_node_slots_per_s

    sc = load_scenario("paper-sim", ["nodes=3", "slots=4"])
    rate = pettingzoo_node_slots_per_s(sc, sample_network(sc, 0), episodes=2, repeats=1)
    assert np.isfinite(rate) and rate > 0  # an unmasked choice would raise in step()
