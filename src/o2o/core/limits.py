"""What fits on this machine: the memory a command will need, estimated before anything is
allocated, and a refusal that says the limit and what to change.

The simulator's memory is dominated by three terms (bytes, B episodes run at once, T slots, N
nodes, R = the ring of future slot boundaries the engine keeps, about deadline / slot + 4):

* the network: ``48 N^2`` (link rates and failure rates, with the temporaries of their draw);
* per-task records of a batch: ``~300 B T N`` (the episode draws and the engine's times);
* what nodes observe, kept as events on the ring: ``8 (3 R + 8) B N^2``.

Every count a user gives (episodes, training seeds, workers, steps, ...) has an upper bound,
checked before any list is built or anything is written (``COUNT_LIMITS``; docs/limits.md says
why each): a count past it would take days, or more memory than a machine has, before doing
anything useful.

A learner's data set holds ``~(8 D + 2 (N + 1) + 60)`` bytes per node-slot, D the observation's
length (3N + 6 in layout v1, 10N + 6 in v2). The
estimates carry a safety factor; a command refuses when they exceed the memory available now.
"""

from __future__ import annotations

import math
import os

from o2o.core import seeds
from o2o.core.decpomdp import OBS_LAYOUT_V2, obs_dim
from o2o.core.errors import UserError
from o2o.core.scenario import Scenario

SAFETY = 1.5
# A local testbed node is one Python process with numpy: its resident memory, measured ~60 MB.
TESTBED_NODE_BYTES = 80 * 2**20
# A training or sweep worker process (Python, numpy, PyTorch, the simulator): measured 243 MB
# resident after its imports, before its data set.
WORKER_PROCESS_BYTES = 300 * 2**20

# Upper bounds of the counts (docs/limits.md). Any count: 10^6 (episodes, steps, batch sizes,
# repeats; a million paper-sim episodes are ~25 min of one scheduler, 10^6 offline steps
# ~2 h). Held-out, validation and logged episodes: the size of their seed range.
MAX_COUNT = 1_000_000
MAX_TRAINING_SEEDS = 1_000         # a training seed is minutes of training; 1000 are days
MAX_WORKERS = 256                  # processes (and torch threads); memory is checked as well
MAX_TESTBED_EPISODES = 10_000      # real time: 5 s per paper-testbed episode, 14 h
MAX_SEED = 2**62                   # episode and network seeds (seed + count fits in int64)
MAX_TRAINING_SEED = 1_000_000      # a training seed k draws online episodes from 10^9 (k + 1)
COUNT_LIMITS: dict[str, int] = {
    "seeds": MAX_TRAINING_SEEDS,
    "workers": MAX_WORKERS,
    "eval_episodes": seeds.TEST.stop - seeds.TEST.start,
    "curve_episodes": seeds.VALIDATION.stop - seeds.VALIDATION.start,
    "log_episodes": seeds.LOGS.stop - seeds.LOGS.start,
    "collect_episodes": MAX_TESTBED_EPISODES,
    "episodes_per_round": MAX_TESTBED_EPISODES,
    "online_rounds": MAX_TESTBED_EPISODES,
}


def count_limit(name: str) -> int:
    """The largest value of the count ``name`` (a plan's size, an option's value)."""
    return COUNT_LIMITS.get(name, MAX_COUNT)


def check_counts(sizes: dict[str, int], where: str = "", options: bool = False) -> None:
    """Refuse any of ``sizes`` above its bound, naming it (as a command-line option with
    ``options``) and the bound."""
    for name, value in sizes.items():
        limit = count_limit(name)
        if isinstance(value, int) and value > limit:
            shown = "--" + name.replace("_", "-") if options else name
            raise UserError(f"{where}{shown} = {value:,} is more than the {limit:,} supported "
                            f"(docs/limits.md)")
    rounds, per_round = sizes.get("online_rounds"), sizes.get("episodes_per_round")
    if isinstance(rounds, int) and isinstance(per_round, int) and \
            rounds * per_round > MAX_TESTBED_EPISODES:
        names = ("--online-rounds", "--episodes-per-round") if options else \
            ("online_rounds", "episodes_per_round")
        raise UserError(f"{where}{names[0]} x {names[1]} = {rounds * per_round:,} testbed episodes, "
                        f"more than the {MAX_TESTBED_EPISODES:,} supported (docs/limits.md)")


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


def check_workers(workers: int, what: str, data_bytes: int = 0) -> None:
    """``workers`` processes of ``WORKER_PROCESS_BYTES`` each, each holding ``data_bytes``."""
    check_memory(workers * (WORKER_PROCESS_BYTES + data_bytes),
                 f"{workers} worker processes ({what})",
                 "use fewer --workers" + (", or smaller data sets" if data_bytes else ""))


def check_testbed(nodes: int) -> None:
    check_memory(nodes * TESTBED_NODE_BYTES, f"a local testbed of {nodes} node processes",
                 "use fewer --nodes, or run the nodes on other hosts (o2o testbed node)")
