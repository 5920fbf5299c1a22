"""Schedulers of SPEC section 3: decentralized rules over a node's view, the centralized
reference, and the learned actor (``drl``, see ``o2o.schedulers.drl``)."""

from __future__ import annotations

from o2o.errors import UserError
from o2o.schedulers.central import Central, episode_bound, task_success_bound
from o2o.schedulers.heuristics import ESF, RATC, RDA, LocalRule, RandomRule, Rule

HEURISTICS: dict[str, type[Rule]] = {
    "random": RandomRule, "local": LocalRule, "ratc": RATC, "rda": RDA, "esf": ESF,
}
SCHEDULERS = [*HEURISTICS, "central"]


def make_scheduler(name: str):
    """A scheduler by name: a decentralized ``Rule`` or the engine-level ``Central``."""
    if name in HEURISTICS:
        return HEURISTICS[name]()
    if name == "central":
        return Central()
    raise UserError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)} "
                    "(or 'drl' with a model)")


__all__ = ["Central", "ESF", "HEURISTICS", "LocalRule", "RATC", "RDA", "RandomRule", "Rule",
           "SCHEDULERS", "episode_bound", "make_scheduler", "task_success_bound"]
