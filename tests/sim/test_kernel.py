"""The compiled slot (``o2o.sim.kernel``) and the compiled observation and mask
(``o2o.core.observe_loops``) against the array code they replaced, to the bit."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from o2o.core.decpomdp import OBS_LAYOUT_V2, OBS_LAYOUT_VERSION, Observer
from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.sim.engine import Engine
from o2o.sim.env import OffloadVecEnv
from tests.sim.reference_engine import ReferenceEngine
from tests.sim.test_engine_properties import scenarios

TASK_RECORDS = ["dest", "outcome", "end_s", "tx_start_s", "tx_s", "exec_arrive_s", "pending_arrival_s",
                "exec_start_s", "exec_s", "reward", "reward_by_decision", "link_free", "cpu_free"]
OBSERVED = ["exec_len", "exec_wait", "in_flight", "exec_backlog_s", "send_backlog_s", "overloaded"]


def same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def run_both(scenario, network, seeds, rng, local_share=0.3, crowd=False):
    """Step the compiled and the reference engine with the same actions; assert that what every
    node observes, the rewards and every task record agree to the bit."""
    ep = sample_episodes(scenario, network, seeds)
    new, ref = Engine(scenario, network, ep), ReferenceEngine(scenario, network, ep)
    n = network.n
    while not new.done:
        a = rng.integers(0, n, size=(len(seeds), n))
        if crowd:  # every node sends to one node: long queues, many events per boundary
            a[:] = rng.integers(0, n)
        elif rng.random() < local_share:
            a[:] = np.arange(n)
        s_new, s_ref = new.node_state(), ref.node_state()
        for name in OBSERVED:
            assert same(getattr(s_new, name), getattr(s_ref, name)), (name, new.t)
        assert same(new.step(a), ref.step(a)), ("reward", new.t)
    assert ref.done
    for name in TASK_RECORDS:
        assert same(getattr(new, name), getattr(ref, name)), name
    m_new, m_ref = new.metrics(), ref.metrics()
    assert m_new.keys() == m_ref.keys()
    for k in m_new:
        assert same(m_new[k], m_ref[k]), k


@pytest.mark.parametrize("preset", ["paper-sim", "paper-testbed"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("crowd", [False, True])
def test_compiled_slot_equals_the_array_code(preset, batch, crowd):
    sc = load_scenario(preset)
    for net_seed in range(2):
        run_both(sc, sample_network(sc, net_seed), list(range(10 * net_seed, 10 * net_seed + batch)),
                 np.random.default_rng(net_seed), crowd=crowd)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), net_seed=st.integers(0, 10**6), seed=st.integers(0, 10**6),
       crowd=st.booleans())
def test_compiled_slot_equals_the_array_code_on_random_scenarios(sc, net_seed, seed, crowd):
    run_both(sc, sample_network(sc, net_seed), [seed, seed + 1], np.random.default_rng(seed), crowd=crowd)


def test_bad_destinations_are_refused_before_anything_changes():
    sc = load_scenario("paper-sim")
    net = sample_network(sc, 0)
    e = Engine(sc, net, sample_episodes(sc, net, [0]))
    has = e.ep.has_task[0, 0]
    a = np.zeros((1, net.n), dtype=np.int64)
    a[0, np.argmax(has)] = net.n
    before = e.outcome.copy()
    with pytest.raises(ValueError, match="destinations must lie in"):
        e.step(a)
    with pytest.raises(ValueError, match="actions must have shape"):
        e.step(np.zeros((2, net.n), dtype=np.int64))
    assert e.t == 0 and same(e.outcome, before) and np.isnan(e.end_s).all()


# ------------------------------------------------------------------ observation and mask

def array_observe_v1(obs: Observer, node, exec_len, recv_len, has, size, cycles, deadline):
    """The paper's observation as the array code wrote it before the compiled loops."""
    n = obs.n
    out = np.zeros((node.shape[0], 3 * n + 6))
    out[:] = obs.static[node]
    out[:, n + 3] = np.minimum(np.asarray(exec_len) / obs.queue_scale, 1.0)
    recv_others = np.asarray(recv_len)[np.arange(node.shape[0])[:, None], obs.others[node]]
    out[:, n + 4:2 * n + 3] = np.minimum(recv_others / obs.queue_scale, 1.0)
    task = np.stack([size, cycles, deadline], axis=-1) / obs.task_scale
    out[:, 3 * n + 3:] = np.where(has[:, None], np.clip(task, 0.0, 1.0), 0.0)
    return out.astype(np.float32)


def array_mask(node, has, overloaded):
    m, n = overloaded.shape
    mask = np.zeros((m, n + 1), dtype=bool)
    mask[:, :n] = ~overloaded & has[:, None]
    mask[np.arange(m), node] = has
    mask[:, n] = ~has
    return mask


@pytest.mark.parametrize("layout", [OBS_LAYOUT_VERSION, OBS_LAYOUT_V2])  # v3 is array code only
def test_compiled_observation_and_mask_equal_the_array_code(layout):
    sc = load_scenario("paper-sim")
    net = sample_network(sc, 3)
    env = OffloadVecEnv(sc, net, obs_layout=layout)
    observer = env.observer
    rng = np.random.default_rng(0)
    obs, mask = env.reset([5, 6])
    steps = 0
    while True:
        e = env.engine
        t = min(e.t, e.T - 1)
        state = e.node_state()
        has = e.ep.has_task[:, e.t, :].reshape(-1) if e.t < e.T else np.zeros(2 * net.n, dtype=bool)
        node = np.tile(np.arange(net.n), 2)
        expect = array_observe_v1(observer, node, state.exec_len.reshape(-1), state.in_flight.reshape(-1, net.n),
                                  has, e.ep.size_bytes[:, t].reshape(-1), e.ep.cycles[:, t].reshape(-1),
                                  e.ep.deadline_s[:, t].reshape(-1))
        assert same(obs.reshape(-1, obs.shape[-1])[:, :3 * net.n + 6], expect)
        assert same(mask.reshape(-1, net.n + 1),
                    array_mask(node, has, np.repeat(state.overloaded, net.n, axis=0)))
        if e.done:
            break
        cdf = np.cumsum(mask / mask.sum(-1, keepdims=True), axis=-1)
        actions = np.minimum((rng.random(mask.shape[:2] + (1,)) >= cdf).sum(-1), net.n)
        obs, mask, *_ = env.step(actions)
        steps += 1
    assert steps == sc.slots
    if layout == OBS_LAYOUT_V2:
        assert obs.shape[-1] == 10 * net.n + 6


def test_observer_takes_any_array_layout_and_read_only_inputs():
    sc = load_scenario("paper-sim")
    net = sample_network(sc, 0)
    observer = Observer(sc, net)
    n = net.n
    node = np.arange(n)
    exec_len = np.arange(n)  # int
    recv = np.arange(n * n, dtype=np.int64).reshape(n, n).T  # not C-contiguous
    has = np.arange(n) % 2 == 0
    size, cycles, deadline = (np.full(n, v) for v in (1e5, 1e8, 1.0))
    for arr in (node, exec_len, recv, has, size):
        arr.flags.writeable = False
    got = observer.observe(node, exec_len, recv, has, size, cycles, deadline)
    assert same(got, array_observe_v1(observer, node, exec_len, recv, has, size, cycles, deadline))
    overloaded = (np.arange(n * n).reshape(n, n) % 3 == 0)
    assert same(observer.mask(node, has, overloaded), array_mask(node, has, overloaded))
