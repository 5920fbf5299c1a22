"""The static edge network, drawn once from a network seed.

Shared by the simulator and the testbed: both run on the same ``Network`` object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from o2o.core.scenario import Scenario

BYTES_PER_KB = 1024
BITS_PER_BYTE = 8
BYTES_PER_MB = 1_000_000


@dataclass(frozen=True)
class Network:
    """Node and link parameters. Links are ordered: ``link_rate_Bps[i, j]`` is i -> j."""

    cores: np.ndarray             # (N,) int
    capacity_hz: np.ndarray       # (N,) F_i = cores_i * core_hz
    node_fail_rate: np.ndarray    # (N,) alpha_i, failures per second of execution
    arrival_prob: np.ndarray      # (N,) lambda_i
    link_rate_Bps: np.ndarray     # (N, N) r_ij in bytes per second; diagonal = the largest rate
    link_fail_rate: np.ndarray    # (N, N) beta_ij, failures per second of transmission; diagonal 0
    overload_threshold: np.ndarray  # (N,) node j is overloaded when more tasks than this wait

    @property
    def n(self) -> int:
        return int(self.cores.shape[0])

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> "Network":
        return cls(
            cores=np.asarray(data["cores"], dtype=np.int64),
            capacity_hz=np.asarray(data["capacity_hz"], dtype=np.float64),
            node_fail_rate=np.asarray(data["node_fail_rate"], dtype=np.float64),
            arrival_prob=np.asarray(data["arrival_prob"], dtype=np.float64),
            link_rate_Bps=np.asarray(data["link_rate_Bps"], dtype=np.float64),
            link_fail_rate=np.asarray(data["link_fail_rate"], dtype=np.float64),
            overload_threshold=np.asarray(data["overload_threshold"], dtype=np.float64),
        )


def overload_thresholds(cores: np.ndarray, queue_coef: float) -> np.ndarray:
    """Node j is overloaded when more than cores_j / min(cores) * queue_coef
    tasks wait in its execution queue; min is over the network's nodes."""
    return cores / cores.min() * queue_coef


def sample_network(scenario: Scenario, seed: int) -> Network:
    """Draw cores, F, alpha, lambda and every ordered link's rate and beta from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6E6574]))
    n = scenario.nodes
    cores = rng.choice(np.asarray(scenario.cores, dtype=np.int64), size=n)
    capacity_hz = cores * scenario.core_hz
    node_fail_rate = rng.uniform(*scenario.node_fail_rate, size=n)
    arrival_prob = rng.uniform(*scenario.arrival_prob, size=n)
    rate_mbps = rng.uniform(*scenario.link_rate_mbps, size=(n, n))
    link_fail_rate = rng.uniform(*scenario.link_fail_rate, size=(n, n))
    np.fill_diagonal(link_fail_rate, 0.0)
    # r_ii is "the maximum rate" (paper IV-B); local tasks are never transmitted.
    np.fill_diagonal(rate_mbps, scenario.link_rate_mbps[1])
    return Network(
        cores=cores,
        capacity_hz=capacity_hz.astype(np.float64),
        node_fail_rate=node_fail_rate,
        arrival_prob=arrival_prob,
        link_rate_Bps=rate_mbps * BYTES_PER_MB,
        link_fail_rate=link_fail_rate,
        overload_threshold=overload_thresholds(cores, scenario.queue_coef),
    )
