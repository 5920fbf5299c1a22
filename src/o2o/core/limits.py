"""What fits on this machine: the memory a command will need, estimated before anything is
allocated, and a refusal that says the limit and what to change.

The simulator's memory is dominated by three terms (bytes, B episodes run at once, T slots, N
nodes, R = the ring of future slot boundaries the engine keeps, about deadline / slot + 4):

* the network: ``48 N^2`` (link rates and failure rates, with the temporaries of their draw);
* per-task records of a batch: ``~300 B T N`` (the episode draws and the engine's times);
* what nodes observe, kept as events on the ring: ``8 (3 R + 8) B N^2``.

A learner's data set holds ``~(8 D + 2 (N + 1) + 60)`` bytes per node-slot, D the observation's
length (3N + 6 in layout v1, 10N + 6 in v2). The
estimates carry a safety factor; a command refuses when they exceed the memory available now.
"""

from __future__ import annotations

import math
import os

from o2o.core.decpomdp import OBS_LAYOUT_V2, obs_dim
from o2o.core.errors import UserError
from o2o.core.scenario import Scenario

SAFETY = 1.5
# A local testbed node is one Python process with numpy: its resident memory, measured ~60 MB.
TESTBED_NODE_BYTES = 80 * 2**20


def available_bytes() -> int:
    """Memory available for new allocations now (Linux MemAvailable; elsewhere free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def ring_slots(scenario: Scenario) -> int:
    return int(math.ceil(scenario.max_deadline_s / scenario.slot_s)) + 4


def simulation_bytes(scenario: Scenario, batch: int) -> int:
    n, t, r = scenario.nodes, scenario.slots, ring_slots(scenario)
    network = 48 * n * n
    tasks = 300 * batch * t * n
    observed = 8 * (3 * r + 8) * batch * n * n
    return int(SAFETY * (network + tasks + observed))


def dataset_bytes(scenario: Scenario, episodes: int, obs_layout: str = OBS_LAYOUT_V2) -> int:
    """A data set of ``episodes`` logged episodes (observations and next observations as
    float32, both masks, the other arrays)."""
    n = scenario.nodes
    rows = episodes * scenario.slots * n
    return int(SAFETY * rows * (8 * obs_dim(n, obs_layout) + 2 * (n + 1) + 60))


def _gib(x: float) -> str:
    return f"{x / 2**30:.1f} GiB"


def check_memory(needed: int, what: str, change: str) -> None:
    """Refuse (UserError) when ``needed`` bytes exceed what is available now."""
    have = available_bytes()
    if needed > have:
        raise UserError(f"{what} needs about {_gib(needed)} of memory, and {_gib(have)} is "
                        f"available on this machine; {change}")


def check_simulation(scenario: Scenario, batch: int) -> None:
    check_memory(simulation_bytes(scenario, batch),
                 f"simulating {scenario.nodes} nodes x {scenario.slots} slots, {batch} episodes at once",
                 "use fewer nodes or slots, or a smaller --batch-size")


def check_testbed(nodes: int) -> None:
    check_memory(nodes * TESTBED_NODE_BYTES, f"a local testbed of {nodes} node processes",
                 "use fewer --nodes, or run the nodes on other hosts (o2o testbed node)")
