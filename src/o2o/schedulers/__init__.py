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
    SlackReliable,
    SlackReliableK,
    Spread,
)

HEURISTICS: dict[str, type[Rule]] = {
    "random": RandomRule, "local": LocalRule, "ratc": RATC, "rda": RDA, "esf": ESF,
    "spread": Spread, "slack-reliable": SlackReliable, "slack-reliable-k": SlackReliableK,
}


# The rules with parameters that ``o2o tune`` chooses per network and scenario.
TUNABLE: dict[str, type[Spread]] = {"spread": Spread, "slack-reliable": SlackReliable,
                                    "slack-reliable-k": SlackReliableK}


def make_rule(name: str, params: dict[str, float] | None = None) -> Rule:
    """A decentralized heuristic by name, with ``params`` (a tunable rule's; defaults where
    None). A bad name or parameter is a user error."""
    if name not in HEURISTICS:
        raise UserError(f"unknown heuristic {name!r}; choose from {', '.join(HEURISTICS)}")
    if not params:
        return HEURISTICS[name]()
    if name not in TUNABLE:
        raise UserError(f"heuristic {name!r} has no parameters (tunable: {', '.join(TUNABLE)})")
    unknown = sorted(set(params) - set(TUNABLE[name].PARAMS))
    if unknown:
        raise UserError(f"{name} has no parameter {', '.join(unknown)}; its parameters: "
                        f"{', '.join(TUNABLE[name].PARAMS)}")
    try:
        return TUNABLE[name](**{k: float(v) for k, v in params.items()})
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None


__all__ = ["ESF", "HEURISTICS", "LocalRule", "RATC", "RDA", "RandomRule", "Rule", "SlackReliable", "SlackReliableK",
           "Spread", "TUNABLE", "make_rule"]
