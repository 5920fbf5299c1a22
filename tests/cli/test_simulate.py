"""``o2o simulate`` and ``o2o bench sim`` as a user runs them."""

import json
import subprocess
import sys

from o2o.cli.main import main


def test_simulate_json_has_every_scheduler_and_the_bound(capsys):
    rc = main(["simulate", "--set", "nodes=5", "--set", "slots=20", "--scheduler", "ratc",
               "--scheduler", "central", "--episodes", "3", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"ratc", "central", "bound", "bound-task", "bound_episodes"}
    assert out["bound_episodes"] == 3
    for name in ("ratc", "central"):
        r = out[name]
        fields = {"success_rate", "success_rate_std", "probes_per_task", "tasks", "success", "drop",
                  "exec_fail", "trans_fail"}
        assert set(r) == (fields | {"tuned"} if name == "central" else fields)
        assert r["success"] + r["drop"] + r["exec_fail"] + r["trans_fail"] == r["tasks"]
        assert 0 <= r["success_rate"] <= out["bound"] <= out["bound-task"] <= 1
    # central's planner took one greedy rule per episode, scored on the episode's own tasks.
    assert out["central"]["tuned"]["episodes"] == 3 == sum(out["central"]["tuned"]["rule_taken"].values())
    # RATC probes two nodes, itself sometimes one of them; central reads every queue.
    assert 1 < out["ratc"]["probes_per_task"] < 2 and out["central"]["probes_per_task"] == "full"


def test_simulate_table(capsys):
    assert main(["simulate", "--set", "nodes=4", "--set", "slots=10", "--episodes", "2",
                 "--scheduler", "local"]) == 0
    out = capsys.readouterr().out
    assert "local" in out and "bound" in out and "bound-task" in out and "success rate" in out
    assert "probes/task" in out


def test_bad_input_exits_2_with_a_message(capsys):
    assert main(["simulate", "--set", "arrival_prob=[0.9, 0.1]"]) == 2
    assert "arrival_prob" in capsys.readouterr().err
    assert main(["simulate", "--scheduler", "fastest"]) == 2
    assert "unknown scheduler" in capsys.readouterr().err
    assert main(["simulate", "--episodes", "0"]) == 2
    assert main(["simulate", "--scenario", "/no/such.yaml"]) == 2


def test_console_script_exit_code_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "o2o.cli", "simulate", "--set", "nodes=1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "nodes" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_yardsticks_times_the_bound_and_every_planner(capsys):
    assert main(["bench", "yardsticks", "--set", "nodes=4", "--set", "slots=10", "--episodes", "2",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["nodes"], out["slots"], out["episodes"]) == (4, 10, 2)
    for name in ("bound", "central", "central-reliable", "central-earliest"):
        assert out[name]["cpu_s_per_episode"] > 0


def test_bench_sim_json(capsys):
    assert main(["bench", "sim", "--batch", "8", "--repeats", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["random"]["node_slots_per_s"] > 0 and out["ratc"]["node_slots_per_s"] > 0
