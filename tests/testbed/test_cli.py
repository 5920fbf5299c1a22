"""``o2o testbed ...`` from the command line: bad input, a whole run, the O2O-DRL pipeline."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from o2o.cli.main import main
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.testbed import wire

SMALL = ["--nodes", "3", "--set", "slots=12", "--set", "slot_s=0.05", "--set", "deadline_s=0.6",
         "--set", "task_size_kb=[200,1000]"]


RUN_TAG = "O2O_TEST_RUN_TAG"


def node_pids(tag: str) -> set[int]:
    """Node processes started by the ``o2o`` command tagged ``tag`` (to find strays). The tag
    is an environment variable the nodes inherit, so tests running in parallel (other pytest
    workers with testbeds of their own) are not counted."""
    pids = set()
    needle = f"{RUN_TAG}={tag}".encode() + b"\0"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
                env = (entry / "environ").read_bytes() + b"\0"
            except OSError:
                continue
            if b"o2o.testbed.node" in cmd and needle in env:
                pids.add(int(entry.name))
    return pids


def o2o(*args, timeout=240, tag: str = ""):
    env = dict(os.environ, **{RUN_TAG: tag})
    env.pop(wire.TOKEN_ENV, None)
    return subprocess.run([sys.executable, "-m", "o2o.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("args, message", [
    (["testbed", "run", "--nodes", "1"], "argument --nodes: must be at least 2, got 1"),
    (["testbed", "run", "--nodes", "4", "--kill-node", "9@3"], "node 9 does not exist"),
    (["testbed", "run", "--kill-node", "1@500"], "slot 500 is past"),
    (["testbed", "run", "--kill-node", "one"], "must look like NODE@SLOT"),
    (["testbed", "run", "--scheduler", "central"], "cannot run on the decentralized testbed"),
    (["testbed", "run", "--scheduler", "central-earliest"], "central-earliest is the simulator's full-information"),
    (["testbed", "run", "--scheduler", "drl"], "needs --model"),
    (["testbed", "run", "--scheduler", "best"], "unknown scheduler"),
    (["testbed", "run", "--set", "slot_s=-1"], "slot_s"),
    (["testbed", "run", "--episodes", "0"], "argument --episodes: must be at least 1, got 0"),
    (["testbed", "run", "--heartbeat-timeout", "0.05"], "--heartbeat-timeout longer"),
    (["testbed", "node", "--controller", "localhost"], "HOST:PORT"),
    (["testbed", "trainer", "--db", "x.db", "--store", "m"], "--run ID"),
])
def test_bad_input_is_a_user_error_before_anything_starts(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    tag = uuid.uuid4().hex
    monkeypatch.setenv(RUN_TAG, tag)  # any node this process started would inherit it
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not node_pids(tag)
    assert not (tmp_path / "runs").exists()          # no task log was created either


def test_node_without_a_token_is_refused(capsys, monkeypatch):
    monkeypatch.delenv(wire.TOKEN_ENV, raising=False)
    assert main(["testbed", "node", "--controller", "127.0.0.1:9"]) == 2
    assert "no testbed token" in capsys.readouterr().err


def test_model_store_without_versions_is_refused(tmp_path, capsys):
    assert main(["testbed", "run", "--scheduler", "drl", "--model", str(tmp_path / "empty"),
                 "--db", str(tmp_path / "x.db"), *SMALL]) == 2
    assert "no versions" in capsys.readouterr().err


def test_run_prints_the_simulators_json_and_leaves_no_process(tmp_path):
    tag = uuid.uuid4().hex
    db = tmp_path / "tb.db"
    got = o2o("testbed", "run", *SMALL, "--episodes", "2", "--db", str(db), "--json", tag=tag)
    assert got.returncode == 0, got.stderr
    assert "Traceback" not in got.stderr
    out = json.loads(got.stdout)
    sim = json.loads(o2o("simulate", "--scenario", "paper-testbed", "--set", "nodes=3",
                         *SMALL[2:], "--episodes", "2", "--json").stdout)
    assert set(out) == set(sim) == {"ratc", "bound", "bound-task", "bound_episodes"}
    assert set(out["ratc"]) == set(sim["ratc"])
    for bound in ("bound", "bound-task"):
        assert out[bound] == pytest.approx(sim[bound])
    assert out["ratc"]["tasks"] == sim["ratc"]["tasks"]
    assert abs(out["ratc"]["success_rate"] - sim["ratc"]["success_rate"]) <= 0.1
    assert not node_pids(tag)
    assert db.exists()


def test_kill_node_on_the_command_line(tmp_path):
    tag = uuid.uuid4().hex
    got = o2o("testbed", "run", *SMALL, "--episodes", "2", "--db", str(tmp_path / "k.db"),
              "--kill-node", "1@4", tag=tag)
    assert got.returncode == 0, got.stderr
    assert "Traceback" not in got.stderr
    assert "node 1 lost at" in got.stdout and "connection closed" in got.stdout
    assert "success rate" in got.stdout and "bound" in got.stdout
    assert not node_pids(tag)


def test_trainer_announces_a_model_to_a_running_controller(tmp_path):
    """The trainer's admin connection: the controller takes the announcement and passes it on."""
    from o2o.models import expected_shapes, save_model
    from o2o.testbed.controller import Controller, ControllerSettings, notify_controller

    sc = load_scenario("paper-testbed", ["nodes=3"])
    net = sample_network(sc, 0)
    key = wire.token_key("trainer-test-token-123")
    rng = np.random.default_rng(0)
    arrays = {k: rng.normal(size=s).astype(np.float32) for k, s in expected_shapes(3, (8,)).items()}
    manifest = save_model(str(tmp_path / "m" / "v000001"), arrays, nodes=3, hidden=(8,), version=1)

    async def go():
        c = Controller(sc, net, ControllerSettings(key=key))
        port = await c.start()
        try:
            await notify_controller("127.0.0.1", port, key, str(tmp_path / "m"), 1, manifest["sha256"])
            with pytest.raises(Exception, match="cannot reach|did not take"):
                await notify_controller("127.0.0.1", port, wire.token_key("not-the-right-token-x"),
                                        str(tmp_path / "m"), 1, manifest["sha256"], timeout_s=2)
            return c.model
        finally:
            await c.close()

    model = asyncio.run(go())
    assert model is not None and model.version == 1 and model.sha256 == manifest["sha256"]


def test_o2o_pipeline_on_the_testbed(tmp_path):
    """The project settings' logs (spread, which probes every node, so observation v2 can be
    rebuilt) -> offline training -> online fine-tuning with hot-swap -> evaluation; every node
    reports running the final model from the store."""
    tag = uuid.uuid4().hex
    store = tmp_path / "models"
    got = o2o("testbed", "o2o", *SMALL, "--set", "slots=8", "--collect-episodes", "2",
              "--offline-steps", "60", "--online-rounds", "1", "--episodes-per-round", "1",
              "--episodes", "1", "--store", str(store), "--db", str(tmp_path / "o2o.db"), "--json",
              "--set-online", "minibatch_size=64", timeout=400, tag=tag)
    assert got.returncode == 0, got.stderr[-3000:]
    out = json.loads(got.stdout)
    assert set(out) >= {"spread", "rda", "offline-only", "o2o-drl", "bound", "model_versions"}
    assert out["model_versions"] == {"offline": 1, "o2o": 2}
    assert out["nodes_on_final_model"] == [0, 1, 2]
    manifests = [json.loads((store / f"v00000{v}" / "manifest.json").read_text()) for v in (1, 2)]
    assert manifests[0]["training"]["phase"] == "offline" and manifests[0]["training"]["source"] == "testbed"
    assert manifests[1]["training"]["phase"] == "online" and manifests[1]["training"]["from_version"] == 1
    assert manifests[0]["sha256"] != manifests[1]["sha256"]
    assert not node_pids(tag)


def test_hand_started_nodes_log_their_index_and_stop_quietly(tmp_path):
    """`o2o testbed controller` with nodes started by hand (no --index): each node's log lines
    show the index it was given, and a node stopped with SIGTERM exits 0 without an error."""
    tag = uuid.uuid4().hex
    env = dict(os.environ, **{RUN_TAG: tag, wire.TOKEN_ENV: "hand-started-nodes-token-0123"})
    ctrl = subprocess.Popen(
        [sys.executable, "-m", "o2o.cli", "testbed", "controller", *SMALL, "--episodes", "1",
         "--listen", "127.0.0.1:0", "--db", str(tmp_path / "c.db"), "--wait-nodes", "60",
         "--keep-nodes", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    nodes = []
    try:
        for line in ctrl.stderr:                      # "controller listening on 127.0.0.1:PORT"
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                break
        assert found, "the controller did not start"
        nodes = [subprocess.Popen([sys.executable, "-m", "o2o.testbed.node", "--controller",
                                   f"127.0.0.1:{found.group(1)}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(3)]
        out, err = ctrl.communicate(timeout=120)
        assert ctrl.returncode == 0, err
        assert json.loads(out)["ratc"]["tasks"] > 0
        for node in nodes:
            node.send_signal(signal.SIGTERM)
        logs = [node.communicate(timeout=30)[1] for node in nodes]
    finally:
        for p in (ctrl, *nodes):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [node.returncode for node in nodes] == [0, 0, 0]
    indices = []
    for log in logs:
        got = re.search(r"node\[(\d)\] INFO registered as node (\d)", log)
        assert got and got.group(1) == got.group(2), log
        indices.append(int(got.group(1)))
        assert "node[?]" not in log and "ERROR" not in log and "Traceback" not in log, log
    assert sorted(indices) == [0, 1, 2]
    assert not node_pids(tag)


def test_compare_runs_the_simulators_episodes_on_the_testbed(tmp_path):
    tag = uuid.uuid4().hex
    got = o2o("testbed", "compare", *SMALL, "--episodes", "2", "--db", str(tmp_path / "c.db"), "--json",
              tag=tag)
    assert got.returncode == 0, got.stderr
    out = json.loads(got.stdout)
    sim = json.loads(o2o("simulate", "--scenario", "paper-testbed", "--set", "nodes=3",
                         *SMALL[2:], "--episodes", "2", "--json").stdout)
    assert [e["seed"] for e in out["episodes"]] == [0, 1]
    assert out["simulator"] == pytest.approx(sim["ratc"]["success_rate"])
    assert out["bound"] == pytest.approx(sim["bound"])
    assert abs(out["difference"]) <= 0.1 and out["same_destination"] >= 0.8
    assert out["changed_outcomes"]["total"] == sum(out["outcome_changes"].values())
    from o2o.testbed.analysis import comparison_lines

    lines = comparison_lines(out)        # header, rule, 2 episodes, rule, mean, bound, notes
    assert lines[0].split()[:3] == ["episode", "seed", "tasks"]
    assert lines[5].split()[:3] == ["mean", f"{out['simulator']:.4f}", f"{out['testbed']:.4f}"]
    assert lines[6] == f"bound {out['bound']:.4f}"
    assert not node_pids(tag)


def test_trainer_takes_the_settings_offline_steps_unless_given(tmp_path, capsys):
    """``o2o testbed trainer --mode offline`` without --steps trains the settings' offline steps
    (the project's 2000), the same number ``o2o run`` takes; --steps overrides it."""
    from o2o.learn.settings import learner_settings
    from o2o.models import ModelStore

    db = tmp_path / "logs.db"
    assert main(["collect", "--set", "nodes=3", "--set", "slots=10", "--episodes", "1",
                 "--db", str(db), "--json"]) == 0
    run = str(json.loads(capsys.readouterr().out)["run"])
    assert main(["testbed", "trainer", "--db", str(db), "--run", run, "--store", str(tmp_path / "m1"),
                 "--mode", "offline", "--json"]) == 0
    assert main(["testbed", "trainer", "--db", str(db), "--run", run, "--store", str(tmp_path / "m2"),
                 "--mode", "offline", "--steps", "7", "--json"]) == 0
    default = ModelStore(str(tmp_path / "m1")).load().manifest["training"]["steps"]
    assert default == learner_settings("project").offline_steps == 2000
    assert ModelStore(str(tmp_path / "m2")).load().manifest["training"]["steps"] == 7


def test_rules_run_at_tuned_values_on_the_testbed_and_teach_the_pipeline(tmp_path, capsys, monkeypatch):
    """``--tuned FILE`` (``o2o tune``): ``testbed compare`` runs the rule at the file's values on
    the nodes and in the simulator; ``testbed o2o --log-tuned`` logs its teacher at them and
    evaluates it as ``NAME (tuned)``. A file for another rule, or one the pipeline would not
    use, is refused before anything starts."""
    from o2o.logs.store import LogStore

    monkeypatch.chdir(tmp_path)
    tuned = tmp_path / "sr.json"
    assert main(["tune", "--scheduler", "slack-reliable", "--scenario", "paper-testbed", "--set", "nodes=3",
                 *SMALL[2:], "--episodes", "2", "--out", str(tuned)]) == 0
    params = json.loads(tuned.read_text())["params"]
    note = "params " + ", ".join(f"{k}={float(v)!r}" for k, v in sorted(params.items()))   # a run's note
    capsys.readouterr()
    tag = uuid.uuid4().hex
    monkeypatch.setenv(RUN_TAG, tag)
    for args, message in (
            (["testbed", "run", *SMALL, "--scheduler", "ratc", "--tuned", str(tuned)],
             "is a tuning of slack-reliable, not of --scheduler ratc"),
            (["testbed", "run", "--nodes", "4", "--tuned", str(tuned)], "tuned for"),
            (["testbed", "o2o", *SMALL, "--tuned", str(tuned), "--store", "s"],
             "does not run at tuned values")):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not node_pids(tag) and not (tmp_path / "runs").exists() and not (tmp_path / "s").exists()

    got = o2o("testbed", "compare", *SMALL, "--tuned", str(tuned), "--episodes", "1",
              "--db", str(tmp_path / "c.db"), "--json", tag=tag)
    assert got.returncode == 0, got.stderr[-3000:]
    out = json.loads(got.stdout)
    assert out["scheduler"] == "slack-reliable" and out["params"] == params
    # The nodes were prepared at the file's values: the run's note records what the controller
    # sent (that the nodes then decide as the simulator's rule at those values, and not at the
    # defaults, is test_integration's). How many destinations agree with the simulator is not
    # asserted here: on a loaded machine a few ms of lateness flips a decision that sits at the
    # rule's margin, and the flip carries on through the episode (seen in CI: 11 of 16).
    with LogStore.open(str(tmp_path / "c.db")) as store:
        (compared,) = [r for r in store.runs() if r.phase == "compare"]
    assert compared.note == note

    db = tmp_path / "o2o.db"
    got = o2o("testbed", "o2o", *SMALL, "--heuristic", "slack-reliable", "--log-tuned",
              "--tuned", str(tuned), "--collect-episodes", "2", "--offline-steps", "20", "--online-rounds", "0",
              "--episodes", "1", "--store", str(tmp_path / "models"), "--db", str(db), "--json",
              timeout=400, tag=tag)
    assert got.returncode == 0, got.stderr[-3000:]
    out = json.loads(got.stdout)
    assert out["log_params"] == params
    assert set(out) >= {"slack-reliable (tuned)", "rda", "offline-only", "o2o-drl"}
    assert "slack-reliable" not in out
    with LogStore.open(str(db)) as store:
        runs = {r.phase: r for r in store.runs() if r.scheduler == "slack-reliable"}
    assert runs["heuristic"].note == note and runs["evaluation"].note == note
    assert not node_pids(tag)
