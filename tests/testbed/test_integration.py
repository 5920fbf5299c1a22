"""A small real testbed inside the test suite: a controller and 4 node processes on loopback.

One testbed is shared by the tests of this module (starting processes is the slow part); each
test leaves it as it found it (all nodes registered). The scenario has short slots and high
failure rates, so that whether the testbed uses the episode's own failure clocks shows clearly
in the per-task comparison with the simulator.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import struct
import threading
import time

import numpy as np
import pytest

from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.outcomes import EXEC_FAIL, PENDING, SUCCESS, TRANS_FAIL
from o2o.core.scenario import load_scenario
from o2o.logs.records import episode_logs_from_rollout
from o2o.logs.store import LogStore
from o2o.models import expected_shapes, save_model
from o2o.sim import make_scheduler
from o2o.sim.rollout import probes_per_task
from o2o.testbed import wire
from o2o.testbed.analysis import compare_logs
from o2o.testbed.launcher import KillPlan, LocalTestbed
from o2o.testbed.phase import run_phase
from o2o.testbed.wire import frames

RTT_LINE = re.compile(r"registered as node \d+ \(clock offset \S+ s, rtt ([0-9.]+) s\)")
OVERRIDES = ["nodes=4", "slot_s=0.05", "slots=16", "arrival_prob=[0.4,0.9]", "task_size_kb=[200,1000]",
             "deadline_s=0.6", "node_fail_rate=[2,5]", "link_fail_rate=[2,5]"]


class Harness:
    """An event loop in a thread that hosts one LocalTestbed for the whole module."""

    def __init__(self, scenario, network, log_dir):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tb = LocalTestbed(scenario, network, heartbeat_timeout_s=0.5, log_dir=log_dir,
                               runtime=wire.NodeRuntime(heartbeat_s=0.05))
        self.call(self.tb.start())

    def call(self, coro, timeout=120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        try:
            self.call(self.tb.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    scenario = load_scenario("paper-testbed", OVERRIDES)
    network = sample_network(scenario, 3)
    h = Harness(scenario, network, tmp_path_factory.mktemp("node-logs"))
    yield scenario, network, h
    procs = list(h.tb._all_procs)
    h.close()
    assert all(p.poll() is not None for p in procs), "a node process outlived the testbed"
    # Every node shut down quietly when the controller asked it to.
    for i in range(network.n):
        log = h.tb.node_log(i)
        assert "shutdown requested by the controller" in log
        assert "Traceback" not in log and "Exception in callback" not in log, log[-3000:]


def registration_rtt_s(h, n: int) -> float:
    """The longest round trip with which a node measured its clock offset (node logs): each
    node's offset to the controller clock is off by at most half of its own."""
    rtts = [float(m) for i in range(n) for m in RTT_LINE.findall(h.tb.node_log(i))]
    assert len(rtts) >= n, "a node log lacks its registration line"
    return max(rtts)


def sim_logs(scenario, network, seeds, name):
    return episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, seeds),
                                     make_scheduler(name))


def test_runs_the_simulators_episodes_and_logs_every_row(setup, tmp_path):
    scenario, network, h = setup
    db = tmp_path / "tb.db"
    seeds = [11, 12]
    with LogStore.open(db, create=True) as store:
        random_run = h.call(run_phase(h.tb, store, scenario, network, "random", seeds[:1],
                                      network_seed=3, phase="test"))
        ratc_run = h.call(run_phase(h.tb, store, scenario, network, "ratc", seeds,
                                    network_seed=3, phase="test"))
        logged = [log for _, log in store.read_episodes(ratc_run.run_id)]
        info = store.run(ratc_run.run_id)
    # Every node-slot has its row, every task an outcome; the run is marked completed.
    assert info.source == "testbed" and info.status == "completed"
    assert len(logged) == 2
    for log, seed in zip(logged, seeds):
        assert log.episode_seed == seed and log.has_task.shape == (16, 4)
        assert not (log.outcome == PENDING).any()
        assert log.tasks == int(sample_episodes(scenario, network, [seed]).has_task.sum())
    assert all(r.gave_up == 0 for r in ratc_run.results)
    # `random` decides from the episode's uniforms alone: the same destinations as the simulator.
    rnd = compare_logs(sim_logs(scenario, network, seeds[:1], "random"), [random_run.results[0].log],
                       scenario.slot_s)
    assert rnd["same_destination"] == 1.0
    # probes/task in the testbed's table: none for random; RATC's two draws, itself excluded.
    assert probes_per_task(random_run.metrics()) == 0.0
    assert 1.0 <= probes_per_task(ratc_run.metrics()) <= 2.0
    # The same failure clocks and task draws: outcomes agree task by task (timing near a
    # deadline may flip a few), although about a fifth of the tasks fail in this scenario.
    for got, name in ((rnd, "random"), (compare_logs(sim_logs(scenario, network, seeds, "ratc"), logged, scenario.slot_s), "ratc")):
        assert got["same_outcome"] >= 0.85, (name, got)
        assert abs(got["difference"]) <= 0.1, (name, got)
    failures = sum(int(np.isin(log.outcome, [EXEC_FAIL, TRANS_FAIL]).sum()) for log in logged)
    assert failures >= 5
    # Payload transfers took s / r_ij. The sender releases the last byte no earlier than s / r_ij
    # after the start (one clock: exact); the receiver reads the end on its own clock, so the
    # end-to-end time may look shorter by at most the two nodes' clock-offset errors, each at most
    # half the round trip it was measured with. The median is a loose bound (2 busy cores).
    sent = np.asarray([x for r in ratc_run.results for x in r.sent])
    assert (sent[:, 2] >= sent[:, 0] / sent[:, 1]).all()
    t = np.asarray([x for r in ratc_run.results for x in r.transfers])
    expected = t[:, 0] / t[:, 1]
    assert (t[:, 2] >= expected - registration_rtt_s(h, network.n)).all()
    assert np.median(t[:, 2] / expected) < 1.2


def test_slack_reliable_runs_on_the_nodes_with_real_probes_of_every_peer(setup, tmp_path):
    scenario, network, h = setup
    with LogStore.open(tmp_path / "tb.db", create=True) as store:
        run = h.call(run_phase(h.tb, store, scenario, network, "slack-reliable", [13],
                               network_seed=3, phase="test"))
        (log,) = [log for _, log in store.read_episodes(run.run_id)]
    assert not (log.outcome == PENDING).any() and run.results[0].gave_up == 0
    # Every deciding node probed every peer (real requests) and logged their backlogs, and
    # every task's action probability was logged (the rule samples).
    assert log.has_probed_backlogs
    has = np.asarray(log.has_task, dtype=bool)
    assert np.all((log.action_prob[has] > 0) & (log.action_prob[has] <= 1))
    got = compare_logs(sim_logs(scenario, network, [13], "slack-reliable"), [log], scenario.slot_s)
    assert got["same_outcome"] >= 0.85, got
    # The table's probes/task is measured from those requests (N - 1 each), as the simulator's.
    assert probes_per_task(run.metrics()) == network.n - 1


def test_a_rule_runs_on_the_nodes_at_the_tuned_values_prepare_carries(setup, tmp_path):
    """``run_phase(..., params=...)``: every node builds slack-reliable at the given values (here
    far from its defaults); its decisions follow the simulator's rule at those values, not at
    the defaults, and the run's note records them."""
    scenario, network, h = setup
    tuned = {"local_margin": 1.0, "peer_margin": 1.0, "rel_power": 0.0, "slack_power": 16.0}
    with LogStore.open(tmp_path / "tb.db", create=True) as store:
        run = h.call(run_phase(h.tb, store, scenario, network, "slack-reliable", [14],
                               network_seed=3, phase="test", params=tuned))
        (log,) = [log for _, log in store.read_episodes(run.run_id)]
        info = store.run(run.run_id)
    assert info.note == "params local_margin=1.0, peer_margin=1.0, rel_power=0.0, slack_power=16.0"
    episodes = sample_episodes(scenario, network, [14])
    at_tuned = episode_logs_from_rollout(scenario, network, episodes, make_scheduler("slack-reliable", tuned))
    at_defaults = episode_logs_from_rollout(scenario, network, episodes, make_scheduler("slack-reliable"))
    same_tuned = compare_logs(at_tuned, [log], scenario.slot_s)["same_destination"]
    same_defaults = compare_logs(at_defaults, [log], scenario.slot_s)["same_destination"]
    assert same_tuned >= 0.8 and same_tuned > same_defaults + 0.1, (same_tuned, same_defaults)
    # The next phase without values runs the defaults again.
    again = h.call(run_phase(h.tb, None, scenario, network, "slack-reliable", [14], network_seed=3,
                             phase="test"))
    plain = compare_logs(at_defaults, [again.results[0].log], scenario.slot_s)["same_destination"]
    assert plain > compare_logs(at_tuned, [again.results[0].log], scenario.slot_s)["same_destination"]


async def rogue(host, port, what):
    """Send one kind of bad input to a node's port; return what the connection saw."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if what == "garbage":
            writer.write(b"GET / HTTP/1.1\r\n\r\n" + os.urandom(64))
        elif what == "wrong-token":
            # Read the challenge without checking it, answer with a hello made with another token.
            length = struct.unpack(">I", await reader.readexactly(4))[0]
            data = await reader.readexactly(length)
            nonce = wire.parse_message(data[wire.TAG_BYTES + 4:]).nonce
            wrong = wire.token_key("definitely-the-wrong-token")
            hello = wire.Hello(version=wire.PROTOCOL_VERSION, role="peer", node=1, nonce="b" * 32)
            writer.writelines(wire.build_frame(frames._hello_key(wrong, nonce), 0, hello))
        else:
            header, _ = await wire.read_frame(reader, h_key, 0, 1 << 16)
            nonce = wire.parse_message(header).nonce
            hello = wire.Hello(version=wire.PROTOCOL_VERSION, role="peer", node=1, nonce="a" * 32)
            writer.writelines(wire.build_frame(frames._hello_key(h_key, nonce), 0, hello))
            c2s, _ = frames._session_keys(h_key, nonce, "a" * 32)
            conn = wire.FramedConnection(reader, writer, c2s, c2s, 1 << 20, "rogue")
            if what == "oversized":
                writer.write(struct.pack(">I", 512 * 1024 * 1024))
            elif what == "schema":
                conn.send(wire.Chunk(episode=0, slot=0, source=1), b"")   # fine frame, then bad ones:
                bad = b'{"type": "payload_begin", "size_bytes": -4}'
                head = struct.pack(">I", len(bad)) + bad
                writer.write(struct.pack(">I", wire.TAG_BYTES + len(head)) + frames._tag(c2s, conn._send_seq, head) + head)
                conn._send_seq += 1
                conn.send(wire.Chunk(episode=0, slot=3, source=2), b"x" * 10)  # claims another node's task
                conn.send(wire.EpisodeEnd(episode=0))                          # not a data message
        await writer.drain()
        try:   # the node may have sent its challenge; then it must hang up
            while await asyncio.wait_for(reader.read(1 << 16), 2):
                pass
        except asyncio.TimeoutError:
            return "open"
        return "closed"
    except (ConnectionError, asyncio.IncompleteReadError):
        return "closed"
    finally:
        writer.close()


h_key = None


def test_bad_input_is_rejected_and_logged_without_harming_the_node(setup):
    global h_key
    scenario, network, h = setup
    h_key = h.tb.key
    node0 = h.tb.controller.nodes[0]
    before = dict(node0.rejected)

    async def attack_during_episode():
        task = asyncio.create_task(run_phase(h.tb, None, scenario, network, "ratc", [21],
                                             network_seed=3, phase="test"))
        await asyncio.sleep(0.5)
        seen = {w: await rogue("127.0.0.1", node0.port, w)
                for w in ("garbage", "wrong-token", "oversized", "schema")}
        # The controller's port refuses the same.
        seen["controller-garbage"] = await rogue("127.0.0.1", h.tb.controller.port, "garbage")
        return seen, await task

    seen, run = h.call(attack_during_episode())
    assert seen["garbage"] == "closed" and seen["oversized"] == "closed"
    assert seen["wrong-token"] == "closed"
    assert seen["controller-garbage"] == "closed"
    assert h.tb.procs[0].poll() is None, "the node died"
    res = run.results[0]
    assert res.gave_up == 0 and not res.deaths
    assert not (res.log.outcome == PENDING).any()
    time.sleep(0.3)   # the next heartbeat carries the node's counters
    counts = h.tb.controller.nodes[0].rejected
    grew = {k: counts.get(k, 0) - before.get(k, 0) for k in counts}
    assert grew.get("unauthenticated", 0) >= 1          # the wrong token
    assert grew.get("oversized", 0) >= 2                # garbage read as a length, the big frame
    assert grew.get("malformed", 0) >= 1                # payload_begin with a negative size
    assert grew.get("unexpected", 0) >= 2               # another node's chunk, a controller message
    log = h.tb.node_log(0)
    assert "rejected message" in log and "Traceback" not in log
    assert sum(h.tb.controller.rejected_connections.values()) >= 1


def publish_random_model(url, n, seed, version):
    rng = np.random.default_rng(seed)
    arrays = {k: rng.normal(0, 0.3, size=s).astype(np.float32) for k, s in expected_shapes(n, (16,)).items()}
    return save_model(url, arrays, nodes=n, hidden=(16,), version=version)


def test_drl_models_are_hot_swapped_between_episodes_and_verified(setup, tmp_path):
    scenario, network, h = setup
    store = str(tmp_path / "models")
    m1 = publish_random_model(f"{store}/v000001", network.n, 1, 1)
    m2 = publish_random_model(f"{store}/v000002", network.n, 2, 2)
    c = h.tb.controller

    async def scenario_run():
        await c.announce_model(store, 1, m1["sha256"])
        first = await run_phase(h.tb, None, scenario, network, "drl", [31], network_seed=3, phase="test")
        v1 = {i: max(x.ready.items())[1].model_version for i, x in c.nodes.items()}
        await c.announce_model(store, 2, m2["sha256"])
        second = await run_phase(h.tb, None, scenario, network, "drl", [31], network_seed=3, phase="test")
        v2 = {i: max(x.ready.items())[1].model_version for i, x in c.nodes.items()}
        # A wrong checksum is refused by every node, and the episode is not started.
        await c.announce_model(store, 2, "0" * 64)
        try:
            await c.prepare("drl")
            refused = None
        except Exception as exc:  # noqa: BLE001 - the message is checked below
            refused = str(exc)
        await c.announce_model(store, 2, m2["sha256"])
        await c.prepare("ratc")
        return first, second, v1, v2, refused

    first, second, v1, v2, refused = h.call(scenario_run())
    assert set(v1.values()) == {1} and set(v2.values()) == {2} and len(v1) == 4
    assert refused is not None and "checksum" in refused
    # The nodes ran the actor: every decision carries its probability, as the simulator's drl.
    from o2o.models import load_model
    from o2o.schedulers.drl import DRLRule

    for run, url in ((first, f"{store}/v000001"), (second, f"{store}/v000002")):
        log = run.results[0].log
        assert np.isfinite(log.action_prob[log.has_task]).all()
        rule = DRLRule.from_model(load_model(url, nodes=4), scenario, network)
        sim = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, [31]), rule)[0]
        # Observations differ a little in time (real queues), so compare loosely.
        same = (sim.dest[log.has_task] == log.dest[log.has_task]).mean()
        assert same >= 0.8
    assert not np.array_equal(first.results[0].log.action_prob, second.results[0].log.action_prob)


def test_kill9_and_a_frozen_node_are_detected_their_tasks_fail_and_they_rejoin(setup, tmp_path):
    scenario, network, h = setup
    db = tmp_path / "faults.db"
    c = h.tb.controller
    with LogStore.open(db, create=True) as store:
        # Episode 0: node 1 gets SIGKILL at slot 5 and is restarted; episode 1: it is back.
        run = h.call(run_phase(h.tb, store, scenario, network, "ratc", [41, 42], network_seed=3,
                               phase="test", kills=[KillPlan(1, 0, 5)]))
        logs = [log for _, log in store.read_episodes(run.run_id)]
    first, second = run.results
    assert len(logs) == 2 and all(not (log.outcome == PENDING).any() for log in logs)
    assert [d["node"] for d in first.deaths] == [1]
    assert first.deaths[0]["slot"] in (5, 6)
    has = first.log.has_task
    # Node 1's own tasks from the kill on ended as execution failures where they arrived.
    late = has[6:, 1]
    assert late.any() and (first.log.outcome[6:, 1][late] == EXEC_FAIL).all()
    assert (first.log.dest[6:, 1][late] == 1).all()
    # Tasks that were with node 1 at the kill (sent to it or queued there) failed too.
    towards_1 = has & (first.log.dest == 1)
    assert not (first.log.outcome[towards_1 & (np.arange(16)[:, None] >= 6)] == SUCCESS).any()
    # The restarted process rejoined: it decided and completed tasks in the next episode.
    assert not second.deaths
    assert (second.log.outcome[:, 1][second.log.has_task[:, 1]] == SUCCESS).any()
    assert h.tb.procs[1].poll() is None

    # A frozen node (SIGSTOP) keeps its connection open: only the heartbeat can tell.
    async def freeze():
        proc = h.tb.procs[2]
        await c.prepare("ratc")
        task = asyncio.create_task(c.run_episode(9, 43, "ratc"))
        await asyncio.sleep(0.4)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            result = await task
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        # Declared dead, the node finds its connection closed, registers again and rejoins.
        await c.wait_for_nodes(4, 20)
        await c.prepare("ratc")
        return result

    frozen = h.call(freeze())
    assert [d["detected_by"] for d in frozen.deaths] == ["heartbeat timeout"]
    assert frozen.gave_up == 0 and not (frozen.log.outcome == PENDING).any()
    assert sorted(c.active()) == [0, 1, 2, 3]


def test_k_probe_drl_and_rule_send_real_probes_to_exactly_their_k_peers(setup, tmp_path):
    # Layout o2o-obs-v3-k2 and slack-reliable-k (k = 2): each deciding node sends a real probe
    # request to exactly the 2 peers drawn from its task's uniform, logs their backlogs and no
    # other peer's, and the log rebuilds the k-probe observations (issue 19, goal 2).
    from o2o.core.decpomdp import PROBE_SET_UNIFORM, probe_set
    from o2o.logs.transitions import rebuild_transitions
    from o2o.testbed.analysis import logged_probes_per_task

    scenario, network, h = setup
    layout, n, seed = "o2o-obs-v3-k2", network.n, 41
    store = str(tmp_path / "kmodels")
    rng = np.random.default_rng(5)
    shapes = expected_shapes(n, (16,), ("actor",), "scorer", layout)
    arrays = {k: rng.normal(0, 0.3, size=s).astype(np.float32) for k, s in shapes.items()}
    model = save_model(f"{store}/v000001", arrays, nodes=n, hidden=(16,), actor_head="scorer", obs_layout=layout)

    async def runs():
        await h.tb.controller.announce_model(store, 1, model["sha256"])
        drl = await run_phase(h.tb, None, scenario, network, "drl", [seed], network_seed=3, phase="test")
        rule = await run_phase(h.tb, None, scenario, network, "slack-reliable-k", [seed], network_seed=3,
                               phase="test")
        await h.tb.controller.prepare("ratc")
        return drl, rule

    drl, rule = h.call(runs())
    u = sample_episodes(scenario, network, [seed]).sched_u[0]
    node = np.tile(np.arange(n), scenario.slots)
    want = probe_set(u.reshape(-1, u.shape[-1])[:, PROBE_SET_UNIFORM], node, n, 2).reshape(scenario.slots, n, n)
    for run in (drl, rule):
        log = run.results[0].log
        has = np.asarray(log.has_task, dtype=bool)
        asked = np.isfinite(log.peer_backlog_s) & ~np.eye(n, dtype=bool)[None]
        np.testing.assert_array_equal(asked[has], want[has])
        assert logged_probes_per_task([log]) == 2.0
        chosen = log.dest[has]
        rows = np.nonzero(has)
        assert np.all((chosen == rows[1]) | want[rows[0], rows[1], chosen])
    tr = rebuild_transitions(scenario, network, [drl.results[0].log], "node", layout)
    known = tr.observations[0][..., 7 + 10 * n:]
    has = np.asarray(drl.results[0].log.has_task, dtype=bool)
    np.testing.assert_array_equal(known[has], (want | np.eye(n, dtype=bool)[None])[has])
