"""Is the tuned same-information rule tuned widely enough? slack-reliable tuned on its shipped
grid (``o2o.experiments.tuning.GRIDS``) against the same rule tuned on a wider grid, both on the
same 10 validation episodes that ``o2o tune`` uses, then both evaluated

* on 20 other VALIDATION episodes (900 100 ... 900 119, where the screens of
  ``scripts/learner_screen.py`` choose the learner's settings): out of sample for the choice;
* on the held-out episodes of the main job's results (``docs/results/main-netK.json``) and of
  the best learner variant (``docs/results/variants/counterfactual-tuned-teacher-8k-netK.json``),
  paired per episode with each one's O2O-DRL (its per-episode rates in the file).

    PYTHONPATH=src python scripts/wider_rule_grid.py [NETWORK_SEED ...] [--records DIR]   # default 0 1 2 3

``--records DIR`` also writes each network's wide-grid tuning record, in the format of
``o2o tune --out`` (``DIR/slack-reliable-wide-netK.json``), for ``o2o run --tuned`` and
``o2o simulate --tuned``.

Nothing is chosen on the held-out episodes: the grid's values are chosen on validation ones.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from o2o.core import seeds
from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.scenario import scenario_from_dict
from o2o.experiments.tuning import WIDE_GRIDS, tune_rule
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

ROOT = Path(__file__).resolve().parents[1]
WIDE = WIDE_GRIDS["slack-reliable"]


def ci(x: np.ndarray) -> str:
    d, lo, hi = mean_ci95(x)
    return f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def main(network_seeds: list[int], records: str | None = None) -> None:
    for k in network_seeds:
        files = {"main job": ROOT / f"docs/results/main-net{k}.json",
                 "best variant": ROOT / f"docs/results/variants/counterfactual-tuned-teacher-8k-net{k}.json"}
        files = {name: json.loads(p.read_text()) for name, p in files.items() if p.exists()}
        scenario = scenario_from_dict(next(iter(files.values()))["scenario"])
        network = sample_network(scenario, k)
        params = {}
        for name, grid in (("shipped grid", None), ("wide grid", WIDE)):
            start = time.perf_counter()
            record = tune_rule(scenario, network, "slack-reliable", network_seed=k, grid=grid)
            params[name] = record["params"]
            if records and name == "wide grid":
                Path(records).mkdir(parents=True, exist_ok=True)
                (Path(records) / f"slack-reliable-wide-net{k}.json").write_text(json.dumps(record, indent=1) + "\n")
            print(f"network {k}, {name}: {record['params']} tuning-episode score "
                  f"{record['validation_score']:.4f} ({len(record['candidates'])} candidates, "
                  f"{time.perf_counter() - start:.0f} s)", flush=True)
        val = seeds.VALIDATION.take(20, 100)
        rule = {name: simulate(scenario, network, val, make_scheduler("slack-reliable", p))["success_rate"]
                for name, p in params.items()}
        print(f"  validation 900100..900119: shipped {rule['shipped grid'].mean():.4f}, wide "
              f"{rule['wide grid'].mean():.4f}, wide - shipped {ci(rule['wide grid'] - rule['shipped grid'])}")
        for label, results in files.items():
            episodes = results["evaluation_seeds"]
            drl = np.asarray(results["o2o-drl"]["per_episode"])
            held = {name: simulate(scenario, network, episodes, make_scheduler("slack-reliable", p))["success_rate"]
                    for name, p in params.items()}
            print(f"  held-out ({label}, {len(episodes)} episodes): O2O-DRL {drl.mean():.4f}; rule shipped "
                  f"{held['shipped grid'].mean():.4f}, wide {held['wide grid'].mean():.4f}; O2O-DRL - "
                  f"shipped {ci(drl - held['shipped grid'])}, O2O-DRL - wide {ci(drl - held['wide grid'])}",
                  flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network_seeds", type=int, nargs="*", default=[0, 1, 2, 3])
    parser.add_argument("--records", default=None, help="also write the wide-grid tuning records here")
    args = parser.parse_args()
    main(args.network_seeds, args.records)
