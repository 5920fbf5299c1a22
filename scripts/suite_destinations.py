"""Where the policies of the data-set bench send tasks: for each scheduler, on test episodes of
one suite cell, the share of decisions kept local and the mean "herd" share: per slot, the most
tasks any one node receives from the slot's deciding nodes, over the slot's decisions (1/k when k
decisions spread over k nodes, 1 when every one goes to the same node).

    python scripts/suite_destinations.py --suite suites/v1 [--network-seed 0] [--load default]
        [--behaviour spread] [--steps 5000] [--episodes 10]

The d3rlpy algorithms are fitted as ``o2o dataset bench`` fits them (same seed, same steps), so
they are the bench's models. Needs the ``datasets`` extra.
"""

from __future__ import annotations

import argparse

import numpy as np

from o2o.core.decpomdp import OBS_LAYOUT_V2, Observer
from o2o.core.episodes import sample_episodes
from o2o.experiments.d3rlpy_adapter import ALGORITHMS, D3rlpyRule, fit, to_mdp_dataset
from o2o.logs.suite import Suite
from o2o.sim import make_scheduler
from o2o.sim.rollout import rollout


def destinations(scenario, network, seeds, scheduler) -> tuple[float, float]:
    """(share kept local, mean herd share) over the slots with at least two decisions."""
    run = rollout(scenario, network, sample_episodes(scenario, network, seeds), scheduler)
    n = network.n
    local = decisions = 0
    shares = []
    for b in range(run.actions.shape[0]):
        for t in range(run.actions.shape[1]):
            a = run.actions[b, t]
            deciders = np.nonzero(a < n)[0]
            if deciders.size == 0:
                continue
            decisions += deciders.size
            local += int((a[deciders] == deciders).sum())
            if deciders.size >= 2:
                shares.append(np.bincount(a[deciders], minlength=n).max() / deciders.size)
    herds = float(np.mean(shares)) if shares else float("nan")
    return local / max(decisions, 1), herds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True)
    parser.add_argument("--network-seed", type=int, default=0)
    parser.add_argument("--load", default="default")
    parser.add_argument("--behaviour", default="spread")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    suite = Suite(args.suite)
    cell = suite.cell(args.network_seed, args.load)
    scenario, network = suite.scenario_network(cell)
    seeds = suite.split_seeds("test")[:args.episodes]
    params = {n: p["params"] for n, p in cell["parameters"].items()}
    schedulers = {name: make_scheduler(name, params.get(name)) for name in ("spread", "slack-reliable")}
    data = suite.dataset(cell, args.behaviour)
    for name in ALGORITHMS:
        algo = fit(name, to_mdp_dataset(data), args.steps, seed=0)
        schedulers[f"{name} ({args.behaviour})"] = D3rlpyRule(
            algo, Observer(scenario, network, OBS_LAYOUT_V2), data["observations"].shape[1])
    print(f"network seed {args.network_seed}, load {args.load}, test episodes {seeds[0]}..{seeds[-1]}")
    print(f"{'scheduler':<26}{'kept local':>11}{'herd share':>12}")
    for name, scheduler in schedulers.items():
        local, herd = destinations(scenario, network, seeds, scheduler)
        print(f"{name:<26}{local:>11.3f}{herd:>12.3f}")


if __name__ == "__main__":
    main()
