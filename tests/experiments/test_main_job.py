"""``o2o run`` end to end on a tiny scenario: every phase, every output."""

import json
import platform
import re

import numpy as np
import torch

from o2o.cli.main import main
from o2o.core import seeds
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.experiments.main_job import rebuild_report
from o2o.experiments.methods import METHODS
from o2o.logs.store import LogStore
from o2o.models import load_model
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

TINY = ["--set", "nodes=4", "--set", "slots=10", "--seeds", "2", "--log-episodes", "4",
        "--offline-steps", "40", "--online-episodes", "16", "--eval-episodes", "3", "--quick"]


def test_run_writes_the_comparison_models_logs_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--workers", "1", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "results.json").read_text())
    assert set(printed) == {*METHODS, "bound", "bound-task"}
    for method in METHODS:
        r = report[method]
        lo, hi = r["ci95"]
        assert lo <= r["success_rate"] <= hi and 0 <= r["success_rate"] <= 1
        assert printed[method]["success_rate"] == r["success_rate"]
    assert 0 < report["bound"] <= report["bound-task"] <= 1
    assert report["plan"]["offline_steps"] == report["settings"]["offline_steps"] == 40  # the steps taken
    # where it was computed: learned rows drift between CPUs and library builds
    env = report["environment"]
    assert env["cpu"] and env["python"] == platform.python_version()
    assert env["libraries"]["numpy"] == np.__version__ and env["libraries"]["torch"] == torch.__version__
    for method in ("offline-only", "online-only", "o2o-drl"):
        assert len(report[method]["per_seed"]) == 2
        for seed in (0, 1):
            model = load_model(str(out / "models" / method / f"seed{seed}"), nodes=4)
            assert model.manifest["training"]["method"] == method
    # The learning curves start where they should: online-only from its random initialisation,
    # O2O-DRL from the offline actor (same evaluation episodes, so the same number).
    for curve in report["curves"]:
        assert curve["o2o"][0]["episodes"] == 0 and curve["o2o"][-1]["episodes"] == 16
        assert curve["o2o"][0]["success_rate"] == curve["offline"][-1]["success_rate"]
    assert report["cold_start"]["o2o_first_online_episodes"] > 0
    # The cold start in numbers: every online episode of each seed, as collected, against the
    # logging heuristic on the same episodes; regret is the sum of the per-episode differences.
    deployment = report["deployment"]
    assert deployment["episodes"] == 16 and deployment["window_episodes"] == 8
    assert deployment["references"] == ["spread"] and deployment["learners"] == ["o2o-drl", "online-only"]
    for k, row in enumerate(deployment["per_seed"]):
        assert row["seed"] == k and row["episode_seeds"] == seeds.online(k).take(16)
        assert len(row["tasks"]) == 16 and set(row["success"]) == {"o2o-drl", "online-only", "spread"}
        heuristic = np.array(row["success"]["spread"])
        for method in ("o2o-drl", "online-only"):
            learner = np.array(row["success"][method])
            assert len(learner) == 16 and np.all(learner <= np.array(row["tasks"]))
            assert row[method]["regret_tasks"]["spread"] == int((heuristic - learner).sum())
            assert row[method]["dip"] <= 0
    # O2O-DRL's recorded episodes give its training success rate of each batch again.
    batches = [r for r in map(json.loads, (out / "metrics" / "seed0" / "metrics.jsonl").read_text().splitlines())
               if r["phase"] == "o2o"]
    row = deployment["per_seed"][0]
    rates = np.array(row["success"]["o2o-drl"]) / np.array(row["tasks"])
    assert [b["train_success_rate"] for b in batches] == [float(rates[:8].mean()), float(rates[8:].mean())]
    regrets = deployment["mean"]["o2o-drl"]["regret_tasks_per_seed"]["spread"]
    assert deployment["mean"]["o2o-drl"]["regret_tasks"]["spread"] == np.mean(regrets)
    assert "## The cold start" in (out / "results.md").read_text()
    for name in ("results.md", "learning_curve.png", "deployment.png", "comparison.png", "logs.db"):
        assert (out / name).stat().st_size > 0
    assert (out / "metrics" / "seed0" / "metrics.jsonl").exists()
    with LogStore.open(out / "logs.db") as store:
        (run,) = store.runs()
        # The project settings log spread (the paper's, RATC).
        assert run.scheduler == "spread" and run.status == "completed"
        assert len(store.episode_ids(run.id)) == 4
    # The heuristics are evaluated on the held-out episodes, deterministically.
    assert np.isfinite(report["timing_s"]["total"])
    # O2O-DRL's paired differences to every other method, from the per-episode rates.
    paired = report["o2o-drl"]["paired"]
    assert set(paired) == {m for m in report if m not in ("o2o-drl", "bound", "bound-task") and isinstance(report[m], dict)
                           and "success_rate" in report[m]}
    diff = np.mean(np.array(report["o2o-drl"]["per_episode"]) - np.array(report["spread"]["per_episode"]))
    assert paired["spread"]["diff"] == diff
    # spread and slack-reliable were tuned here on validation episodes, and compared with the
    # tuned values: the same rates again from the recorded parameters.
    scenario = load_scenario("paper-sim", ["nodes=4", "slots=10"])
    network = sample_network(scenario, 0)
    assert set(report["tuned"]) == {"spread", "slack-reliable"}
    for name, tuned in report["tuned"].items():
        assert tuned["source"] == "auto" and all(s in seeds.VALIDATION for s in tuned["validation_seeds"])
        assert tuned["validation_score"] >= tuned["default_score"]
        rates = simulate(scenario, network, report["evaluation_seeds"],
                         make_scheduler(name, tuned["params"]))["success_rate"]
        assert rates.tolist() == report[name]["per_episode"]
    # Probes per task beside every success rate: 0 for local, N - 1 for esf and the learned
    # methods (observation v2 probes every peer), "full" for central.
    assert report["local"]["probes_per_task"] == 0 and report["esf"]["probes_per_task"] == 3
    assert report["o2o-drl"]["probes_per_task"] == 3 and report["o2o-drl"]["probes_note"] == "full answers"
    assert report["central"]["probes_per_task"] == "full" and 0 < report["ratc"]["probes_per_task"] < 2
    assert "probes/task" in (out / "results.md").read_text()


def test_run_refuses_to_overwrite_a_finished_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert main(["run", *TINY, "--out", str(out)]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert main(["run", "--quick", "--seeds", "0", "--out", str(tmp_path / "x")]) == 2
    assert main(["run", "--quick", "--set-offline", "nonsense=1", "--out", str(tmp_path / "y")]) == 2


def test_report_reproduces_a_run_and_ablation_runs_its_rungs(tmp_path, capsys):
    out = tmp_path / "run"
    tiny = [a for a in TINY if a not in ("2",)]
    tiny[tiny.index("--seeds") + 1:tiny.index("--seeds") + 1] = ["1"]
    assert main(["run", *tiny, "--workers", "1", "--out", str(out), "--json"]) == 0
    saved = {name: (out / name).read_bytes() for name in ("results.json", "results.md")}
    before = json.loads(saved["results.json"])
    capsys.readouterr()
    assert main(["report", "--run", str(out), "--json"]) == 0
    paired = json.loads(capsys.readouterr().out)
    lines = []
    after = rebuild_report(out, log=lines.append)
    for method in METHODS:  # the saved models (and the tuned values) give the same numbers again
        assert after[method]["success_rate"] == before[method]["success_rate"]
        assert after[method].get("probes_per_task") == before[method].get("probes_per_task")
    assert after["tuned"] == before["tuned"]
    assert after["deployment"] == before["deployment"]  # from results.json's counts
    assert lines[0].split("## The cold start")[1] == saved["results.md"].decode().split("## The cold start")[1]
    assert paired == after["o2o-drl"]["paired"] == before["o2o-drl"]["paired"]
    # `o2o report` recomputes and prints: the run's files are as the run wrote them
    assert {name: (out / name).read_bytes() for name in saved} == saved
    # The text form: one aligned column of differences, however long the method's name.
    assert main(["report", "--run", str(out)]) == 0
    rows = capsys.readouterr().out.split("paired per episode (95% CI):\n")[1].splitlines()
    assert len(rows) == len(paired) and len({re.search(r" [+-]\d", row).start() for row in rows}) == 1
    assert main(["report", "--run", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err

    abl = tmp_path / "ablation"
    assert main(["ablation", *tiny, "--workers", "1", "--rung", "0", "--rung", "7", "--rung", "9",
                 "--rung", "10", "--out", str(abl), "--json"]) == 0
    rungs = json.loads(capsys.readouterr().out)[:2]
    report = json.loads((abl / "ablation.json").read_text())
    # Rungs 9 and 10: the tuned rule's logs (its values tuned for the network), then the
    # counterfactual credit on them.
    teacher, counterfactual = (r["settings"] for r in report["rungs"][2:])
    assert teacher["log_heuristic"] == counterfactual["log_heuristic"] == "slack-reliable"
    assert teacher["log_tuned"] and counterfactual["log_tuned"]
    assert (teacher["reward_credit"], counterfactual["reward_credit"]) == ("node", "counterfactual")
    assert [r["rung"] for r in rungs] == ["paper", "+ spread logs (project)"]
    assert rungs[0]["settings"]["preset"] == "paper" and rungs[1]["settings"]["log_heuristic"] == "spread"
    table = (abl / "ablation.md").read_text()
    assert "| paper |" in table and "probes/task" in table
    # Rung 0 (paper) observes v1: the peers' 1-bit flags; rung 7 (project) v2: full answers.
    assert [(r["probes_per_task"], r["probes_note"]) for r in rungs] == [(3, "1-bit overload flags"), (3, "full answers")]
    assert set(report["heuristics"]) == {"ratc", "spread", "slack-reliable", "central"}
    assert set(report["tuned"]) == {"spread", "slack-reliable"} and report["heuristic_probes"]["central"] == "full"
    # Each rung is also evaluated on validation episodes (where a rung may be chosen), disjoint
    # from the held-out ones it reports, and paired against the tuned same-information rule.
    assert not set(report["validation_seeds"]) & set(report["evaluation_seeds"])
    assert set(report["heuristics_validation"]) == set(report["heuristics"])
    for row in report["rungs"]:
        assert 0 < row["o2o-drl"]["validation"] <= 1
        rule = report["heuristics"]["slack-reliable"]
        assert abs(row["o2o-drl"]["vs_rule"][0] - (row["o2o-drl"]["success_rate"] - rule)) < 1e-9
    assert "O2O-DRL - slack-reliable" in table and "O2O-DRL, validation" in table


def test_the_logging_heuristic_runs_at_the_given_tuned_values(tmp_path):
    # log_dataset with a tunable rule's values logs that rule as simulate runs it, not the
    # defaults (the main job's log_tuned: the teacher at its values tuned on validation).
    from o2o.experiments.methods import log_dataset
    from o2o.learn.settings import learner_settings

    sc = load_scenario("paper-sim", ["nodes=4", "slots=10"])
    net = sample_network(sc, 0)
    ep = seeds.LOGS.take(6)
    params = {"local_margin": 1.0, "peer_margin": 0.3, "rel_power": 16.0, "slack_power": 2.0}
    tuned = simulate(sc, net, ep, make_scheduler("slack-reliable", params))["success_rate"].mean()
    default = simulate(sc, net, ep, make_scheduler("slack-reliable"))["success_rate"].mean()
    assert tuned != default
    for given, want in ((params, tuned), (None, default)):
        logged = log_dataset(sc, net, "slack-reliable", 6, tmp_path / f"{want}.db", tmp_path / f"{want}.npz",
                             network_seed=0, reward_credit="node", obs_layout="o2o-obs-v2", params=given)
        assert logged.success_rate == want
    assert learner_settings("project", log_tuned=True).log_tuned
    assert not learner_settings("paper").log_tuned
