"""The simulator: the exact batched engine, the centralized reference and the bound, the views a
rule decides from, rollouts, and the training environments."""

from __future__ import annotations

from o2o.core.errors import UserError
from o2o.schedulers import HEURISTICS, make_rule
from o2o.sim.central import Central, episode_bound, task_success_bound

SCHEDULERS = [*HEURISTICS, "central"]


def make_scheduler(name: str, params: dict[str, float] | None = None):
    """A scheduler the simulator runs by name: a decentralized rule (with ``params``, a tunable
    rule's parameters) or the centralized reference ``central``."""
    if name in HEURISTICS:
        return make_rule(name, params)
    if name == "central":
        return Central()
    raise UserError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)} "
                    "(or 'drl' with a model)")


__all__ = ["Central", "SCHEDULERS", "episode_bound", "make_scheduler", "task_success_bound"]
