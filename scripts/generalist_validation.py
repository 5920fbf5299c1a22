"""Choose among generalist models on validation episodes only: each model's mean success rate
on VALIDATION episodes of networks it never saw (network seeds 500 and 501, never used by the
tables or by training) at N = 10, 20 and 50, paper-sim otherwise.

    PYTHONPATH=src python scripts/generalist_validation.py MODEL_DIR [MODEL_DIR ...] [--rule] [--large-tasks]

``--large-tasks`` scores instead the cases where the shipped model was weakest at the figures'
points: N = 20 with task_size_kb [1000, 10000] and [1000, 12000] on the same two networks
(the figure 5a points it was compared on use network 0, never these). ``--rule`` also prints the same-information rule ``slack-reliable`` tuned on each of those
networks and N (grid search on 10 other validation episodes, 900 200 - 900 209, as ``o2o tune
--seed 900200``) and run on the same episodes: what a rule gets that is tuned where it runs.
"""

from __future__ import annotations

import sys

import numpy as np

from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.core.seeds import VALIDATION
from o2o.experiments.tuning import tune_rule
from o2o.schedulers.drl import DRLRule
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

NETWORKS = (500, 501)
NODES = (10, 20, 50)
EPISODES = 10
# (N, overrides of paper-sim) of each case: the default cases, and those of --large-tasks.
DEFAULT_CASES = [(n, []) for n in NODES]
LARGE_TASK_CASES = [(20, ["task_size_kb=[1000, 10000]"]), (20, ["task_size_kb=[1000, 12000]"])]


def tuned_rule(scenario, network, network_seed: int):
    params = tune_rule(scenario, network, "slack-reliable", network_seed=network_seed, episodes=EPISODES,
                       first_seed=VALIDATION.take(1, 200)[0])["params"]
    return make_scheduler("slack-reliable", params)


def main(args: list[str]) -> None:
    models = [a for a in args if a not in ("--rule", "--large-tasks")]
    cases = LARGE_TASK_CASES if "--large-tasks" in args else DEFAULT_CASES
    where = f"cases {[(n, *o) for n, o in cases]} x networks {NETWORKS}"
    if "--rule" in args:
        rates = []
        for nodes, overrides in cases:
            scenario = load_scenario("paper-sim", [f"nodes={nodes}", *overrides])
            for s in NETWORKS:
                network = sample_network(scenario, s)
                rule = tuned_rule(scenario, network, s)
                rates.append(simulate(scenario, network, VALIDATION.take(EPISODES), rule)["success_rate"].mean())
        print(f"slack-reliable tuned on each: validation {np.mean(rates):.4f} "
              f"({', '.join(f'{r:.4f}' for r in rates)}; {where})", flush=True)
    for model in models:
        rates = []
        for nodes, overrides in cases:
            scenario = load_scenario("paper-sim", [f"nodes={nodes}", *overrides])
            for s in NETWORKS:
                network = sample_network(scenario, s)
                rule = DRLRule.from_model(model, scenario, network)
                rates.append(simulate(scenario, network, VALIDATION.take(EPISODES), rule)["success_rate"].mean())
        print(f"{model}: validation {np.mean(rates):.4f} ({', '.join(f'{r:.4f}' for r in rates)}; "
              f"{where})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
