"""The tuned rules against O2O-DRL on the main job's held-out episodes (docs/tuning.md).

    python scripts/tuned_vs_learner.py TUNED_DIR [NETWORK_SEED ...]

TUNED_DIR holds the files of ``o2o tune --scheduler S --network-seed K --out
TUNED_DIR/S-netK.json`` (S = spread, slack-reliable). For each network seed K it runs RATC,
spread and slack-reliable (defaults and tuned) and central on the evaluation episodes of
``docs/results/main-netK.json`` and prints each success rate with O2O-DRL's paired difference
per episode (95% CI) from that file's per-episode rates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.scenario import scenario_from_dict
from o2o.experiments.tuning import check_tuned, load_tuned
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate


def main(tuned_dir: str, network_seeds: list[int]) -> None:
    for k in network_seeds:
        results = json.loads(Path(f"docs/results/main-net{k}.json").read_text())
        scenario = scenario_from_dict(results["scenario"])
        network = sample_network(scenario, k)
        episodes = results["evaluation_seeds"]
        drl = np.asarray(results["o2o-drl"]["per_episode"])
        rows = [("ratc", "ratc", None), ("spread (0.7, 0.7)", "spread", None),
                ("spread tuned", "spread", "spread"), ("slack-reliable defaults", "slack-reliable", None),
                ("slack-reliable tuned", "slack-reliable", "slack-reliable"), ("central", "central", None)]
        print(f"network seed {k}, episodes {episodes[0]}..{episodes[-1]}: O2O-DRL {drl.mean():.4f}")
        for label, name, tuned in rows:
            params = None
            if tuned:
                record = load_tuned(Path(tuned_dir) / f"{tuned}-net{k}.json")
                check_tuned(record, scenario, k)
                params = record["params"]
            rates = simulate(scenario, network, episodes, make_scheduler(name, params))["success_rate"]
            d, lo, hi = mean_ci95(drl - rates)
            print(f"  {label:24s} {rates.mean():.4f}   O2O-DRL - it {d:+.4f} [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    main(sys.argv[1], [int(s) for s in sys.argv[2:]] or [0, 1, 2])
