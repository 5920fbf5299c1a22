"""How a node builds its rule: at a tunable rule's values when ``prepare`` carries them."""

from __future__ import annotations

import pytest

from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.schedulers import make_rule
from o2o.testbed.node.decide import Decider

TUNED = {"local_margin": 0.8, "peer_margin": 1.0, "rel_power": 64.0, "slack_power": 16.0}


@pytest.fixture
def where():
    scenario = load_scenario("paper-testbed", ["nodes=4"])
    return scenario, sample_network(scenario, 0)


def test_a_tuned_rule_is_built_at_its_values_and_rebuilt_when_they_change(where):
    scenario, network = where
    d = Decider()
    assert d.build("slack-reliable", scenario, network, 0, TUNED) is None
    assert d.rule.params() == TUNED and d.scheduler_params == TUNED
    tuned_rule = d.rule
    assert d.build("slack-reliable", scenario, network, 0, dict(TUNED)) is None
    assert d.rule is tuned_rule                       # the same values: kept
    assert d.build("slack-reliable", scenario, network, 0) is None
    assert d.rule.params() == make_rule("slack-reliable").params()   # None: its defaults again
    assert d.scheduler_params is None


@pytest.mark.parametrize("name, params, message", [
    ("slack-reliable", {"rel_power": -1.0}, "rel_power"),
    ("slack-reliable", {"sharpness": 2.0}, "has no parameter sharpness"),
    ("ratc", {"rel_power": 2.0}, "has no parameters"),
    ("drl", {"rel_power": 2.0}, "drl takes no parameters"),
    ("slack-reliable-k", {"probes": 9.0}, "probe"),
])
def test_values_a_rule_cannot_take_are_an_error_the_node_reports(where, name, params, message):
    scenario, network = where
    d = Decider()
    assert d.build("ratc", scenario, network, 2) is None
    error = d.build(name, scenario, network, 2, params)
    assert error is not None and error.startswith("node 2: ") and message in error, error
    assert d.scheduler_name == "ratc"                 # the rule it had is kept
