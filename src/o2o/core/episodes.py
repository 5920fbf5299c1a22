"""Episodes: every random draw of one episode, made up front from its episode seed.

Arrivals, task sizes, complexities, deadlines, the failure clocks of each task's two stages and
the uniforms a scheduler may use are drawn per episode from ``(episode_seed)`` alone, so every
scheduler (and the testbed) sees the identical task sequence and the same random choices, and an
episode's numbers do not depend on which batch it ran in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from o2o.core.network import BITS_PER_BYTE, BYTES_PER_KB, Network
from o2o.core.scenario import Scenario

# Uniforms per node and slot handed to a scheduler rule (two probe choices, one policy sample,
# one spare), so that no rule needs a random generator of its own.
SCHED_UNIFORMS = 4


@dataclass(frozen=True)
class Episodes:
    """A batch of B episodes; arrays are (B, T, N) unless noted."""

    seeds: np.ndarray          # (B,) episode seeds
    has_task: np.ndarray       # bool: a task arrives at node i at the start of slot t
    size_bytes: np.ndarray     # s
    cycles: np.ndarray         # c = delta * s (s in bits)
    deadline_s: np.ndarray     # d, relative to arrival
    tx_fail_clock: np.ndarray  # Exp(1) draw: the transmission fails after tx_fail_clock / beta_ij
    exec_fail_clock: np.ndarray  # Exp(1) draw: execution fails after exec_fail_clock / alpha_j
    sched_u: np.ndarray        # (B, T, N, SCHED_UNIFORMS) uniforms in [0, 1)

    @property
    def batch(self) -> int:
        return int(self.seeds.shape[0])

    def select(self, index: np.ndarray | slice) -> "Episodes":
        return Episodes(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})


def _one_episode(scenario: Scenario, network: Network, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x657069]))
    t, n = scenario.slots, scenario.nodes
    # Every draw is made for every (slot, node), task or not, so the streams never shift.
    arrive_u = rng.random((t, n))
    size_kb = rng.uniform(*scenario.task_size_kb, size=(t, n))
    complexity = rng.uniform(*scenario.complexity, size=(t, n))
    deadline = rng.uniform(*scenario.deadline_s, size=(t, n))
    tx_clock = rng.exponential(1.0, size=(t, n))
    exec_clock = rng.exponential(1.0, size=(t, n))
    sched_u = rng.random((t, n, SCHED_UNIFORMS))
    size_bytes = size_kb * BYTES_PER_KB
    return {
        "has_task": arrive_u < network.arrival_prob[None, :],
        "size_bytes": size_bytes,
        "cycles": complexity * size_bytes * BITS_PER_BYTE,
        "deadline_s": deadline,
        "tx_fail_clock": tx_clock,
        "exec_fail_clock": exec_clock,
        "sched_u": sched_u,
    }


def sample_episodes(scenario: Scenario, network: Network, seeds) -> Episodes:
    seeds = np.asarray(list(seeds), dtype=np.int64).reshape(-1)
    if network.n != scenario.nodes:
        raise ValueError(f"network has {network.n} nodes but the scenario has {scenario.nodes}")
    parts = [_one_episode(scenario, network, int(s)) for s in seeds]
    stacked = {k: np.stack([p[k] for p in parts]) for k in parts[0]}
    return Episodes(seeds=seeds, **stacked)
