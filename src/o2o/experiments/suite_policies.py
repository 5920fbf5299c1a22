"""The suite's behaviour and reference policies with their tuned parameters: a rule named in
``SuiteSpec.tuned`` (the same-information rule) is tuned per (network, load) by ``o2o tune``'s
grid search on validation episodes (``o2o.experiments.tuning``), never on the suite's test
split; every other name is the simulator's scheduler with its default parameters."""

from __future__ import annotations

from typing import Iterable

from o2o.experiments.tuning import DEFAULT_EPISODES, summary, tune_rule
from o2o.logs.suite import PolicyFactory
from o2o.sim import make_scheduler


def tuned_factory(tuned: Iterable[str], episodes: int = DEFAULT_EPISODES) -> PolicyFactory:
    """A policy factory for ``o2o.logs.suite.build_suite`` that tunes the rules ``tuned``."""
    tuned = frozenset(tuned)

    def factory(name, scenario, network, network_seed):
        if name not in tuned:
            return make_scheduler(name), {}
        record = tune_rule(scenario, network, name, network_seed=network_seed, episodes=episodes)
        kept = {k: v for k, v in summary(record).items() if k != "source"}
        return make_scheduler(name, record["params"]), kept

    return factory
