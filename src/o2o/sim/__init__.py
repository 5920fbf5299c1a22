"""The simulator: the exact batched engine, the centralized references and the bounds, the views
a rule decides from, rollouts, and the training environments."""

from __future__ import annotations

from o2o.core.errors import UserError
from o2o.schedulers import HEURISTICS, make_rule
from o2o.sim.bound import episode_lp_bound, episode_task_bound, mean_bounds, task_success_bound
from o2o.sim.central import Central, GreedyCentral, central_earliest, central_reliable

#: The centralized references (simulator only): the planner and its two greedy rules.
CENTRAL = {"central": Central, "central-reliable": central_reliable, "central-earliest": central_earliest}
SCHEDULERS = [*HEURISTICS, *CENTRAL]


def make_scheduler(name: str, params: dict[str, float] | None = None):
    """A scheduler the simulator runs by name: a decentralized rule (with ``params``, a tunable
    rule's parameters) or one of the centralized references (``central``, ``central-reliable``,
    ``central-earliest``)."""
    if name in HEURISTICS:
        return make_rule(name, params)
    if name in CENTRAL:
        if params:
            raise UserError(f"{name} takes no parameters (got {', '.join(sorted(params))}); "
                            "only the decentralized rules are tuned")
        return CENTRAL[name]()
    raise UserError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)} "
                    "(or 'drl' with a model)")


__all__ = ["CENTRAL", "Central", "GreedyCentral", "SCHEDULERS", "episode_lp_bound", "episode_task_bound",
           "make_scheduler", "mean_bounds", "task_success_bound"]
