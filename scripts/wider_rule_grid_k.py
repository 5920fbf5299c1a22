"""The k-probe rule (slack-reliable-k, k = 2: RATC's probe budget) tuned on the wider grid of
``scripts/wider_rule_grid.py`` instead of the shipped one, on the same 10 validation episodes,
then run on the held-out episodes of ``docs/results/probes-curve/netK.json`` beside that
file's k = 2 learner. The file keeps the learner's mean and per-seed rates, not its per-episode
ones, so the difference printed is of means (unpaired).

    PYTHONPATH=src python scripts/wider_rule_grid_k.py [NETWORK_SEED ...]     # default 0 1 2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from wider_rule_grid import WIDE   # this folder is on the path of a script run

from o2o.core.network import sample_network
from o2o.core.scenario import scenario_from_dict
from o2o.experiments import tuning
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

ROOT = Path(__file__).resolve().parents[1]
K = 2


def main(network_seeds: list[int]) -> None:
    tuning.GRIDS["slack-reliable-k"] = WIDE
    for k in network_seeds:
        data = json.loads((ROOT / f"docs/results/probes-curve/net{k}.json").read_text())
        scenario = scenario_from_dict(data["scenario"])
        network = sample_network(scenario, k)
        (point,) = [p for p in data["points"] if p["k"] == K]
        record = tuning.tune_rule(scenario, network, "slack-reliable-k", network_seed=k, fixed={"probes": K})
        wide = simulate(scenario, network, data["evaluation_seeds"],
                        make_scheduler("slack-reliable-k", record["params"]))["success_rate"].mean()
        learner = point["learner"]["success_rate"]["mean"]
        print(f"network {k}, k = {K}: rule on the shipped grid {point['rule']['success_rate']['mean']:.4f} "
              f"({point['rule']['tuning']['params']}), on the wide grid {wide:.4f} ({record['params']}); "
              f"learner {learner:.4f}; learner - wide-grid rule (means) {learner - wide:+.4f}", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [0, 1, 2])
