"""Heuristic control in the simulator (paper IV-C1): run a scheduler and log every task.

Episodes are simulated in batches (the engine's arrays) and each batch is written in one
transaction, so an interrupt loses at most the batch in progress, never a part of an episode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from o2o.core.episodes import sample_episodes
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.logs.records import episode_logs_from_rollout
from o2o.logs.store import LogStore

LOG_BATCH_EPISODES = 16   # episodes simulated at once and written in one transaction


@dataclass
class CollectResult:
    run_id: int
    episodes: int
    task_rows: int
    success_rate: float       # mean over episodes of success / tasks, as ``o2o simulate``
    seconds: float


def collect(store: LogStore, scenario: Scenario, network: Network, scheduler, scheduler_name: str,
            seeds: Sequence[int], *, network_seed: int | None = None, batch_size: int = LOG_BATCH_EPISODES,
            phase: str = "heuristic", policy_version: str | None = None, source: str = "sim",
            progress: Callable[[int], None] | None = None, on_step=None) -> CollectResult:
    """Simulate ``scheduler`` on the episodes ``seeds`` and write them as one run.

    The run is marked completed at the end, or interrupted (and the exception re-raised) if
    anything, Ctrl-C included, stops it; whole batches written before that stay. ``on_step``
    is passed to the rollout (tests use it to fail mid-run)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    seeds = [int(s) for s in seeds]
    start = time.perf_counter()
    rates: list[float] = []
    with store.start_run(scenario, network, scheduler_name, source=source, phase=phase,
                         network_seed=network_seed, policy_version=policy_version) as run:
        for lo in range(0, len(seeds), batch_size):
            chunk = seeds[lo:lo + batch_size]
            episodes = sample_episodes(scenario, network, chunk)
            logs = episode_logs_from_rollout(scenario, network, episodes, scheduler,
                                             first_index=lo, on_step=on_step)
            run.write_episodes(logs)
            rates.extend(log.success_rate for log in logs)
            if progress is not None:
                progress(len(chunk))
    return CollectResult(run_id=run.run_id, episodes=run.episodes_written,
                         task_rows=run.rows_written,
                         success_rate=float(np.mean(rates)) if rates else float("nan"),
                         seconds=time.perf_counter() - start)
