"""The offline phase of a generalist (``o2o train generalist --teacher RULE``): the teacher's
logs on networks drawn like the online rounds. As O2O-DRL starts its online phase from an actor
trained on a heuristic's logs (paper IV-C), a generalist may start from one trained on a rule's
logs across networks; here the rule is tuned on each drawn network (as ``o2o tune``, or on a
wider grid) and logged there, and ``o2o.learn.generalist.train_offline_across`` trains on all
the data sets at once."""

from __future__ import annotations

from typing import Any

import numpy as np

from o2o.core import seeds
from o2o.core.decpomdp import OBS_LAYOUT_V3, FeatureScales, covering_scales
from o2o.core.errors import UserError
from o2o.core.limits import check_memory, dataset_bytes
from o2o.core.network import sample_network
from o2o.core.progress import progress_bar
from o2o.experiments.tuning import WIDE_GRIDS, tune_rule
from o2o.learn.distribution import Distribution, TeacherPlan
from o2o.logs.dataset import simulated_dataset
from o2o.models import hull_ranges, scenario_ranges
from o2o.schedulers import make_rule


def teacher_datasets(dist: Distribution, plan: TeacherPlan, seed: int, reward_credit: str,
                     show_progress: bool = True
                     ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, Any]], dict[str, list[float]]]:
    """The data sets of the offline phase (layout v3, default feature scales): for each of
    ``plan.networks`` draws of ``dist`` (from a generator of its own, so the online rounds are the
    same with and without it), ``plan.rule`` tuned on that network's validation episodes and
    logged on ``plan.episodes`` episodes (log seeds, disjoint across the networks). Also one
    record per network (the draw, the tuned parameters, the rows) and the hull of the logged
    scenarios' ranges (where the model was trained offline)."""
    plan.check()
    if plan.grid == "wide" and plan.rule not in WIDE_GRIDS:
        raise UserError(f"--teacher-grid wide: only {', '.join(WIDE_GRIDS)} has a wide grid, not "
                        f"--teacher {plan.rule}; use --teacher-grid shipped")
    # Every data set is held until the offline phase: bounded by the largest network drawn.
    check_memory(plan.networks * dataset_bytes(dist.widest(), plan.episodes, OBS_LAYOUT_V3),
                 f"the teacher's logs ({plan.networks} networks x {plan.episodes} episodes, up to "
                 f"{dist.nodes[1]} nodes)", "use fewer --teacher-networks or --teacher-episodes")
    if covering_scales(dist.widest()) != FeatureScales():
        raise UserError("the offline phase logs at the default feature scales, but the ranges drawn reach "
                        "further: keep the ranges within the defaults, or train without --teacher")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7EAC]))
    datasets, records, ranges = [], [], None
    with progress_bar(total=plan.networks, desc="teacher logs", unit="network", disable=not show_progress) as bar:
        for m in range(plan.networks):
            draw = dist.draw(rng)
            scenario = dist.scenario(draw["nodes"], {w: draw[w] for w in dist.upper_ends})
            network = sample_network(scenario, draw["network_seed"])
            tuned = tune_rule(scenario, network, plan.rule, network_seed=draw["network_seed"],
                              episodes=plan.tune_episodes,
                              grid=WIDE_GRIDS[plan.rule] if plan.grid == "wide" else None)
            data = simulated_dataset(scenario, network, make_rule(plan.rule, tuned["params"]),
                                     seeds.LOGS.take(plan.episodes, m * plan.episodes),
                                     reward_credit=reward_credit, obs_layout=OBS_LAYOUT_V3)
            tasks = int(np.sum(~data["action_masks"][:, -1]))
            ranges = hull_ranges(ranges, scenario_ranges(scenario))
            datasets.append(data)
            records.append({**draw, "params": tuned["params"], "rows": int(data["actions"].shape[0]),
                            "tasks": tasks})
            bar.update(1)
    return datasets, records, ranges
