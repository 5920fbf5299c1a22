"""``o2o run`` end to end on a tiny scenario: every phase, every output."""

import json

import numpy as np

from o2o.cli.main import main
from o2o.core import seeds
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
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
    assert set(printed) == {*METHODS, "bound"}
    for method in METHODS:
        r = report[method]
        lo, hi = r["ci95"]
        assert lo <= r["success_rate"] <= hi and 0 <= r["success_rate"] <= report["bound"] <= 1
        assert printed[method]["success_rate"] == r["success_rate"]
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
    for name in ("results.md", "learning_curve.png", "comparison.png", "logs.db"):
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
    assert set(paired) == {m for m in report if m not in ("o2o-drl", "bound") and isinstance(report[m], dict)
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
    before = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert main(["report", "--run", str(out), "--json"]) == 0
    paired = json.loads(capsys.readouterr().out)
    after = json.loads((out / "results.json").read_text())
    for method in METHODS:  # the saved models (and the tuned values) give the same numbers again
        assert after[method]["success_rate"] == before[method]["success_rate"]
        assert after[method].get("probes_per_task") == before[method].get("probes_per_task")
    assert after["tuned"] == before["tuned"]
    assert paired == after["o2o-drl"]["paired"]
    assert main(["report", "--run", str(tmp_path / "none")]) == 2

    abl = tmp_path / "ablation"
    assert main(["ablation", *tiny, "--workers", "1", "--rung", "0", "--rung", "7", "--out", str(abl),
                 "--json"]) == 0
    rungs = json.loads(capsys.readouterr().out)
    assert [r["rung"] for r in rungs] == ["paper", "+ spread logs (project)"]
    assert rungs[0]["settings"]["preset"] == "paper" and rungs[1]["settings"]["log_heuristic"] == "spread"
    assert "| paper |" in (abl / "ablation.md").read_text()
