"""``central`` against its two greedy variants at the acceptance points and at every point of
figures 4, 5a-c and 6 (figure 4's points share network 0's paper-sim defaults), on the same
held-out episodes (TEST seeds), paired per episode.

    PYTHONPATH=src python scripts/central_points.py [--episodes 20] [--json OUT]

For each point: the three success rates on the first ``--episodes`` held-out episodes, central
minus the better greedy variant with its paired 95% Student-t interval, and the same on the
first 10 episodes (the figures' quick plan).
"""

from __future__ import annotations

import argparse
import json

from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.core.seeds import TEST
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

POINTS = [(0, []), (1, []), (2, []), (1, ["arrival_prob=[0,0.6]"])]
POINTS += [(0, [f"task_size_kb=[1000,{v}]"]) for v in (4000, 6000, 10000, 12000)]
POINTS += [(0, [f"arrival_prob=[0,{v}]"]) for v in (0.6, 0.7, 0.8, 0.9)]
POINTS += [(0, [f"node_fail_rate=[0,{v}]"]) for v in (0.15, 0.2, 0.25, 0.3)]
POINTS += [(0, [f"nodes={v}"]) for v in (10, 30, 40, 50)]
NAMES = ("central", "central-reliable", "central-earliest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    seeds = TEST.take(args.episodes)
    rows = []
    print(f"{'network, overrides':<34}{'central':>9}{'reliable':>10}{'earliest':>10}"
          f"   central - better greedy ({args.episodes} episodes)   (first 10)")
    for network_seed, overrides in POINTS:
        scenario = load_scenario("paper-sim", overrides)
        network = sample_network(scenario, network_seed)
        rates = {n: simulate(scenario, network, seeds, make_scheduler(n))["success_rate"] for n in NAMES}
        greedy = max(NAMES[1:], key=lambda n: rates[n].mean())
        greedy10 = max(NAMES[1:], key=lambda n: rates[n][:10].mean())
        d, lo, hi = mean_ci95(rates["central"] - rates[greedy])
        d10, lo10, hi10 = mean_ci95(rates["central"][:10] - rates[greedy10][:10])
        where = f"{network_seed}, {' '.join(overrides) or 'paper-sim'}"
        print(f"{where:<34}" + "".join(f"{rates[n].mean():>10.4f}" for n in NAMES)
              + f"   {d:+.4f} [{lo:+.4f}, {hi:+.4f}]   {d10:+.4f} [{lo10:+.4f}, {hi10:+.4f}]", flush=True)
        rows.append({"network_seed": network_seed, "overrides": overrides,
                     "success_rate": {n: float(rates[n].mean()) for n in NAMES},
                     "central_minus_better_greedy": [d, lo, hi], "first_10": [d10, lo10, hi10]})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"episodes": args.episodes, "seeds": seeds, "points": rows}, f, indent=1)


if __name__ == "__main__":
    main()
