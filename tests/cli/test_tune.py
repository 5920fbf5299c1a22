"""``o2o tune`` and the tuned files that ``simulate`` and ``run`` accept; probes per task."""

import json

import numpy as np
import pytest

from o2o.cli.main import main
from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.experiments.tuning import GRIDS, candidates
from o2o.schedulers.base import two_distinct

SMALL = ["--set", "nodes=4", "--set", "slots=10"]


@pytest.fixture(scope="module")
def tuned_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tune") / "new" / "spread.json"   # a folder that does not exist yet
    assert main(["tune", "--scheduler", "spread", *SMALL, "--network-seed", "1", "--episodes", "3",
                 "--out", str(path)]) == 0
    return path


def test_tune_writes_the_best_candidate_on_validation_seeds(tuned_file):
    record = json.loads(tuned_file.read_text())
    assert record["scheduler"] == "spread" and record["network_seed"] == 1
    assert record["validation_seeds"] == [900_000, 900_001, 900_002]
    scores = [c["score"] for c in record["candidates"]]
    assert len(scores) == len(candidates("spread")) == 7 * 8
    assert record["candidates"][0]["params"] == record["default_params"] == {"local_margin": 0.7, "peer_margin": 0.7}
    best = int(np.argmax(scores))   # the first of the best
    assert record["params"] == record["candidates"][best]["params"]
    assert record["validation_score"] == max(scores) >= record["default_score"] == scores[0]
    assert len(candidates("slack-reliable")) == int(np.prod([len(v) for v in GRIDS["slack-reliable"].values()]))


@pytest.mark.parametrize("seed_args", [["--seed", "1000000"], ["--seed", "0"], ["--seed", "999999"]])
def test_tune_refuses_seeds_outside_validation(tmp_path, capsys, seed_args):
    out = tmp_path / "t.json"
    assert main(["tune", "--scheduler", "spread", *SMALL, "--episodes", "2", *seed_args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("o2o: error:") and "validation" in err
    assert not out.exists()


def test_tune_refuses_an_untunable_rule(tmp_path, capsys):
    assert main(["tune", "--scheduler", "ratc", *SMALL, "--out", str(tmp_path / "t.json")]) == 2


def test_simulate_uses_a_tuned_file_and_refuses_one_for_another_network_or_scenario(tuned_file, capsys, tmp_path):
    params = json.loads(tuned_file.read_text())["params"]
    assert main(["simulate", *SMALL, "--network-seed", "1", "--tuned", str(tuned_file), "--scheduler", "ratc",
                 "--episodes", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"ratc", "spread", "bound", "bound-task", "bound_episodes"}
    assert out["spread"]["params"] == params and out["spread"]["tuned"]["params"] == params
    assert out["spread"]["tuned"]["validation_seeds"] == [900_000, 900_001, 900_002]
    for wrong in (["--network-seed", "2"], ["--network-seed", "1", "--set", "nodes=5"]):
        assert main(["simulate", *SMALL, *wrong, "--tuned", str(tuned_file), "--episodes", "2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("o2o: error:") and "tuned for" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    assert main(["simulate", *SMALL, "--tuned", str(bad)]) == 2
    assert "not a tuned file" in capsys.readouterr().err


def test_probes_per_task_by_hand(capsys):
    n = 5
    args = ["simulate", "--set", f"nodes={n}", "--set", "slots=12", "--network-seed", "3", "--episodes", "3",
            "--seed", "7", "--json"]
    assert main([*args, "--scheduler", "local", "--scheduler", "esf", "--scheduler", "ratc",
                 "--scheduler", "slack-reliable", "--scheduler", "random"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["local"]["probes_per_task"] == 0.0 and out["random"]["probes_per_task"] == 0.0
    assert out["esf"]["probes_per_task"] == n - 1 and out["slack-reliable"]["probes_per_task"] == n - 1
    # RATC: two distinct nodes drawn from each task's uniforms; itself costs no request.
    sc = load_scenario("paper-sim", [f"nodes={n}", "slots=12"])
    ep = sample_episodes(sc, sample_network(sc, 3), [7, 8, 9])
    b, t, i = np.nonzero(ep.has_task)
    pair = two_distinct(ep.sched_u[b, t, i, 0], ep.sched_u[b, t, i, 1], n)
    requests = 2 * b.size - int((pair == i[:, None]).any(axis=1).sum())
    assert out["ratc"]["probes_per_task"] == requests / b.size
    assert b.size == out["ratc"]["tasks"]


def test_run_refuses_a_tuned_file_of_another_network_before_writing(tuned_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *SMALL, "--quick", "--network-seed", "0", "--tuned", str(tuned_file),
                 "--out", str(out)]) == 2
    assert "network seed 1" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_takes_tuned_files_for_its_schedulers(tuned_file, capsys):
    params = json.loads(tuned_file.read_text())["params"]
    assert main(["evaluate", *SMALL, "--network-seed", "1", "--scheduler", "spread", "--tuned", str(tuned_file),
                 "--episodes", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spread"]["params"] == params
    assert main(["evaluate", *SMALL, "--network-seed", "1", "--scheduler", "ratc", "--tuned", str(tuned_file),
                 "--episodes", "2"]) == 2
    assert "add --scheduler" in capsys.readouterr().err


def test_tune_rule_searches_another_grid_when_given():
    """``grid=``: the same search over other values (a wider grid, scripts/wider_rule_grid.py),
    the defaults first, the record naming the grid it searched; the shipped grid is untouched."""
    from o2o.core.network import sample_network
    from o2o.core.scenario import load_scenario
    from o2o.experiments.tuning import GRIDS, tune_rule

    sc = load_scenario("paper-sim", ["nodes=4", "slots=10"])
    shipped = {k: tuple(v) for k, v in GRIDS["slack-reliable"].items()}
    grid = {"local_margin": (0.5, 1.0), "peer_margin": (0.9,), "rel_power": (0.0, 64.0), "slack_power": (8.0,)}
    record = tune_rule(sc, sample_network(sc, 0), "slack-reliable", network_seed=0, episodes=2, grid=grid)
    tried = [c["params"] for c in record["candidates"]]
    assert tried[0] == record["default_params"] and len(tried) == 1 + 4
    assert all(p["slack_power"] == 8.0 for p in tried[1:]) and "rel_power [0.0, 64.0]" in record["search"]
    assert {k: tuple(v) for k, v in GRIDS["slack-reliable"].items()} == shipped
