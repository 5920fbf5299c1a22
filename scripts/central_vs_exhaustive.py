"""How far ``central`` (and its greedy variants) is from the best open-loop plan on tiny instances,
found by exhaustive search on the real engine (o2o.sim.exhaustive), and where the bounds lie.

    PYTHONPATH=src python scripts/central_vs_exhaustive.py [--instances 200] [--draws 32]

Instances: 3 nodes, 3 slots, 2-6 tasks (small, slow nodes, deadline 2 s: the nodes contend),
episode seeds from the held-out range. Two tables: deterministic (failure rates 0: the best plan
is the most any scheduler can reach) and with failures (node_fail_rate [0, 0.3]; expected
successes over ``draws`` clock draws shared by all; the best plan's estimate is biased upwards).
"""

from __future__ import annotations

import argparse

import numpy as np

from o2o.core import seeds
from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.sim import make_scheduler
from o2o.sim.bound import episode_task_bound, lp_bound_one
from o2o.sim.exhaustive import plan_successes, scheduler_successes, with_clocks

TINY = ["nodes=3", "slots=3", "cores=[4, 8]", "complexity=[200, 800]", "deadline_s=2.0"]
CENTRALS = ("central", "central-reliable", "central-earliest")


def tiny_instances(overrides: list[str], count: int, max_tasks: int = 6):
    """(scenario, network, one-episode Episodes) for ``count`` instances with 2..max_tasks tasks."""
    scenario = load_scenario("paper-sim", TINY + overrides)
    found, offset = [], 0
    while len(found) < count:
        seed = seeds.TEST.take(1, offset)[0]
        offset += 1
        network = sample_network(scenario, seed)
        episodes = sample_episodes(scenario, network, [seed])
        if 2 <= episodes.has_task.sum() <= max_tasks:
            found.append((scenario, network, episodes))
    return found


def compare(overrides: list[str], count: int, draws: int, rng_seed: int = 0) -> dict[str, np.ndarray]:
    """Per instance: expected successes of the best plan, each central, and both bounds."""
    rng = np.random.default_rng(rng_seed)
    rows: dict[str, list[float]] = {k: [] for k in ("optimum", "chosen plan", *CENTRALS, "bound", "bound-task",
                                                    "tasks")}
    schedulers = {name: make_scheduler(name) for name in CENTRALS}
    for scenario, network, episodes in tiny_instances(overrides, count):
        # The best plan on draws A, measured on independent draws B (no selection bias), and the
        # best plan's mean on B itself (biased upwards).
        _, successes_a = plan_successes(scenario, network, with_clocks(episodes, rng, draws))
        batch = with_clocks(episodes, rng, draws)
        _, successes = plan_successes(scenario, network, batch)
        rows["optimum"].append(float(successes.mean(axis=1).max()))
        rows["chosen plan"].append(float(successes[np.argmax(successes_a.mean(axis=1))].mean()))
        for name, sched in schedulers.items():
            rows[name].append(float(scheduler_successes(scenario, network, batch, sched).mean()))
        lp, tasks = lp_bound_one(scenario, network, episodes, 0)
        rows["bound"].append(lp)
        rows["bound-task"].append(float(episode_task_bound(network, episodes)[0]) * tasks)
        rows["tasks"].append(tasks)
    return {k: np.asarray(v) for k, v in rows.items()}


def report(title: str, r: dict[str, np.ndarray]) -> None:
    print(f"\n{title}: {r['tasks'].size} instances, {r['tasks'].mean():.2f} tasks on average")
    print(f"  best plan, in-sample (biased up)       {r['optimum'].mean():.3f}")
    print(f"  plan chosen on other draws (unbiased)  {r['chosen plan'].mean():.3f}")
    for name in CENTRALS:
        gap = r["optimum"] - r[name]
        print(f"  {name:<18} {r[name].mean():.3f}   gap to best plan: mean {gap.mean():.3f}, "
              f"worst {gap.max():.3f} successes; equal or better on {np.mean(gap <= 1e-9):.0%}")
    for name in ("bound", "bound-task"):
        # The chosen plan's mean is an unbiased estimate of its expected successes, which the
        # bound must not be below: the mean excess over the instances, with a 95% interval.
        excess = r["chosen plan"] - r[name]
        half = 1.96 * excess.std(ddof=1) / np.sqrt(excess.size) if excess.size > 1 else 0.0
        print(f"  {name:<18} {r[name].mean():.3f}   chosen plan - {name}: mean {excess.mean():+.3f} "
              f"[{excess.mean() - half:+.3f}, {excess.mean() + half:+.3f}], largest {excess.max():+.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--draws", type=int, default=32, help="failure-clock draws per instance")
    args = parser.parse_args()
    report("deterministic (failure rates 0)",
           compare(["node_fail_rate=[0, 0]", "link_fail_rate=[0, 0]"], args.instances, 1))
    report(f"with failures (node_fail_rate [0, 0.3]; {args.draws} clock draws shared by all)",
           compare(["node_fail_rate=[0, 0.3]"], args.instances, args.draws))


if __name__ == "__main__":
    main()
