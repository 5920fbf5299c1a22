"""The k-probe rule (slack-reliable-k, k = 2: RATC's probe budget) tuned on the wider grid of
``scripts/wider_rule_grid.py`` instead of the shipped one, on the same 10 validation episodes,
then run on the held-out episodes of ``docs/results/probes-curve/netK.json`` beside that
file's k = 2 learner: paired per episode (95% CI) where the file keeps the learner's
per-episode rates (``o2o probes-curve`` writes them since 2026-12-02), else a difference of means.

    PYTHONPATH=src python scripts/wider_rule_grid_k.py [NETWORK_SEED ...] [--curves DIR] [--grid wider]   # default 0 1 2

``--curves DIR`` reads ``DIR/netK/probes_curve.json`` (e.g. ``o2o probes-curve --network-seed K
--k 2 --workers 1 --out DIR/netK``) instead of the committed ``docs/results/probes-curve/netK.json``.
``--grid wider`` extends the wide grid's two sharpness exponents past its corner (``WIDER``:
rel_power to 256, slack_power to 64; 4 x 4 x 8 x 8 = 1024 candidates), to see whether the
rule's choice there was held back by the grid's edge.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.scenario import scenario_from_dict
from o2o.experiments.tuning import WIDE_GRIDS, tune_rule
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

ROOT = Path(__file__).resolve().parents[1]
K = 2
WIDE = WIDE_GRIDS["slack-reliable"]
WIDER = {**WIDE, "rel_power": (*WIDE["rel_power"], 128.0, 256.0),
         "slack_power": (*WIDE["slack_power"], 32.0, 64.0)}
CHOICES = {"wide": WIDE, "wider": WIDER}   # --grid


def main(network_seeds: list[int], curves: str | None = None, grid: str = "wide") -> None:
    for k in network_seeds:
        path = Path(curves) / f"net{k}" / "probes_curve.json" if curves else ROOT / f"docs/results/probes-curve/net{k}.json"
        data = json.loads(path.read_text())
        scenario = scenario_from_dict(data["scenario"])
        network = sample_network(scenario, k)
        (point,) = [p for p in data["points"] if p["k"] == K]
        record = tune_rule(scenario, network, "slack-reliable-k", network_seed=k, fixed={"probes": K}, grid=CHOICES[grid])
        rates = simulate(scenario, network, data["evaluation_seeds"],
                         make_scheduler("slack-reliable-k", record["params"]))["success_rate"]
        learner = point["learner"]["success_rate"]["mean"]
        if "per_episode" in point["learner"]:
            d, lo, hi = mean_ci95(np.asarray(point["learner"]["per_episode"]) - rates)
            diff = f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}] (paired)"
        else:
            diff = f"{learner - rates.mean():+.4f} (means)"
        print(f"network {k}, k = {K}: rule on the shipped grid {point['rule']['success_rate']['mean']:.4f} "
              f"({point['rule']['tuning']['params']}), on the {grid} grid {rates.mean():.4f} ({record['params']}); "
              f"learner {learner:.4f} (per seed {point['learner']['per_seed']}); learner - {grid}-grid rule {diff}",
              flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network_seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--curves", default=None, help="folder of probes-curve runs, netK/probes_curve.json")
    parser.add_argument("--grid", choices=sorted(CHOICES), default="wide",
                        help="the rule's grid: wide (scripts/wider_rule_grid.py) or wider (its exponents extended)")
    args = parser.parse_args()
    main(args.network_seeds, args.curves, args.grid)
