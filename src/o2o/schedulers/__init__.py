"""Decentralized schedulers (paper V-B): rules over what a deciding node knows (``NodeView``),
written once and run by the simulator and the testbed alike; the learned actor is ``drl``
(``o2o.schedulers.drl``). The centralized reference and the bound live with the simulator
(``o2o.sim.central``), since only the simulator has the full information they need."""

from __future__ import annotations

from o2o.core.errors import UserError
from o2o.schedulers.heuristics import (
    ESF,
    RATC,
    RDA,
    LocalRule,
    RandomRule,
    Rule,
    Spread,
    SpreadEst,
)

HEURISTICS: dict[str, type[Rule]] = {
    "random": RandomRule, "local": LocalRule, "ratc": RATC, "rda": RDA, "esf": ESF,
    "spread": Spread, "spread-est": SpreadEst,
}


def make_rule(name: str) -> Rule:
    """A decentralized heuristic by name."""
    if name not in HEURISTICS:
        raise UserError(f"unknown heuristic {name!r}; choose from {', '.join(HEURISTICS)}")
    return HEURISTICS[name]()


__all__ = ["ESF", "HEURISTICS", "LocalRule", "RATC", "RDA", "RandomRule", "Rule", "Spread", "SpreadEst", "make_rule"]
