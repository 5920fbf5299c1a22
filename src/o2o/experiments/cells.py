"""The units of work of a sweep, each deterministic and independent of the others.

A unit writes one or more cells (point x method x seed) of the results database:

``heuristic``
    one heuristic (or central) at one point, on all held-out episodes: one cell.
``bound``
    both bounds of every held-out episode at one point: two cells, ``bound`` (the LP) and
    ``bound-task``.
``training``
    one training seed at one point: the logging heuristic's episodes are logged to a task log,
    the data set is rebuilt from it, and ``train_seed`` (the main job's driver) trains and
    evaluates offline-only, O2O-DRL and online-only: one cell per learned method.
``testbed-heuristics``, ``testbed-training``
    the same on the testbed (paper VI): the decentralized heuristics on real node processes,
    and the testbed's O2O-DRL pipeline (``run_testbed_o2o``) for one training seed.

Every random draw of a simulator unit comes from the seeds it is given (the network seed, the
episode seeds of ``o2o.core.seeds``, the training seed; one torch thread), so its cells are the
same whichever process, machine or executor runs it and whatever ran before. A testbed unit
runs real processes against the clock: its numbers vary from run to run like any measurement.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from o2o.core import seeds
from o2o.core.decpomdp import probes_per_decision
from o2o.core.episodes import sample_episodes
from o2o.core.network import sample_network
from o2o.core.scenario import Scenario
from o2o.experiments.methods import (
    Plan,
    SeedJob,
    heuristic_rates,
    log_dataset,
    train_seed,
)
from o2o.experiments.results_db import NO_SEED, Cell
from o2o.experiments.sweeps import BOUND_TASK
from o2o.experiments.tuning import logging_params, summary, tuned_rules
from o2o.learn.settings import LearnerSettings
from o2o.sim import episode_lp_bound, episode_task_bound

SIMULATOR_KINDS = ("heuristic", "bound", "training")
TESTBED_KINDS = ("testbed-heuristics", "testbed-training")


@dataclass(frozen=True)
class Unit:
    """What to compute; ``methods`` are the cells it writes at ``point`` with ``seed``."""

    kind: str
    point: int
    methods: tuple[str, ...]
    seed: int = NO_SEED

    def keys(self) -> list[tuple[int, str, int]]:
        return [(self.point, m, self.seed) for m in self.methods]

    @property
    def on_testbed(self) -> bool:
        return self.kind in TESTBED_KINDS

    @property
    def label(self) -> str:
        what = self.methods[0] if len(self.methods) == 1 else self.kind
        return f"p{self.point} {what}" + (f" s{self.seed}" if self.seed != NO_SEED else "")


@dataclass(frozen=True)
class UnitTask:
    """A unit with everything it needs, sent to a worker process or a Ray task."""

    unit: Unit
    scenario: Scenario
    network_seed: int
    point_value: Any
    logging: str               # the heuristic whose logs train the learned methods
    plan: Any                  # Plan (simulator) or TestbedSizes (testbed)
    log_episodes: int
    settings: LearnerSettings
    eval_seeds: tuple[int, ...]
    folder: str                # the unit's own folder (models, metrics); emptied first
    # The --tuned records by rule of the unit's rules (a training unit: of its logging rule)
    tuned: dict[str, dict[str, Any]] | None = None


def run_unit(task: UnitTask) -> list[Cell]:
    """Compute one unit; its cells (not yet written: the sweep's process writes them)."""
    kind = task.unit.kind
    start, cpu_start = time.perf_counter(), time.process_time()
    if kind == "heuristic":
        cells = _heuristic(task)
    elif kind == "bound":
        cells = _bound(task)
    elif kind == "training":
        cells = _training(task)
    elif kind == "testbed-heuristics":
        cells = _testbed_heuristics(task)
    elif kind == "testbed-training":
        cells = _testbed_training(task)
    else:
        raise ValueError(f"unknown unit kind {kind!r}")
    seconds = time.perf_counter() - start
    # CPU seconds of this process (the node processes of a testbed unit not included): what
    # the unit costs on an idle core, whatever else the machine was doing.
    cpu_s = time.process_time() - cpu_start
    unit = kind if len(task.unit.methods) > 1 else f"{kind}:{task.unit.methods[0]}"
    return [Cell(c.point, c.method, c.seed, c.point_value, c.rates,
                 {**c.info, "unit": unit, "cpu_s": cpu_s}, seconds) for c in cells]


def _cell(task: UnitTask, method: str, rates, info: dict[str, Any] | None = None) -> Cell:
    return Cell(task.unit.point, method, task.unit.seed, task.point_value,
                [float(x) for x in np.asarray(rates, dtype=np.float64)], info or {}, 0.0)


def _fresh_folder(task: UnitTask) -> Path:
    """The unit's folder, emptied: what a killed earlier try left there is not reused."""
    folder = Path(task.folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _heuristic(task: UnitTask) -> list[Cell]:
    """One heuristic on the held-out episodes; a tunable rule first gets its values for this
    point and network (the given record, or tuned here on validation episodes: deterministic,
    so a resumed or remote unit finds the same), kept in the cell's info."""
    network = sample_network(task.scenario, task.network_seed)
    (name,) = task.unit.methods
    tuning = tuned_rules((name,), task.scenario, network, network_seed=task.network_seed,
                         given=task.tuned)
    rates, probes = heuristic_rates(task.scenario, network, list(task.eval_seeds), names=(name,),
                                    params={k: v["params"] for k, v in tuning.items()})
    info: dict[str, Any] = {"probes_per_task": probes[name]}
    if name in tuning:
        info["tuned"] = summary(tuning[name])
    return [_cell(task, name, rates[name], info)]


def _bound(task: UnitTask) -> list[Cell]:
    network = sample_network(task.scenario, task.network_seed)
    episodes = sample_episodes(task.scenario, network, list(task.eval_seeds))
    start = time.perf_counter()
    lp = episode_lp_bound(task.scenario, network, episodes)
    return [_cell(task, "bound", lp, {"lp_s_per_episode": (time.perf_counter() - start) / max(len(lp), 1)}),
            _cell(task, BOUND_TASK, episode_task_bound(network, episodes))]


def _training(task: UnitTask) -> list[Cell]:
    scenario, plan = task.scenario, task.plan
    assert isinstance(plan, Plan)
    network = sample_network(scenario, task.network_seed)
    folder = _fresh_folder(task)
    start = time.perf_counter()
    dataset = folder / "dataset.npz"
    # The settings' log_tuned: the logging rule at its values for this point (a --tuned file's,
    # else tuned here on validation episodes: the same values its own heuristic cell finds).
    params = logging_params(task.logging, task.settings.log_tuned, scenario, network,
                            network_seed=task.network_seed,
                            tuning=task.tuned)
    logged = log_dataset(scenario, network, task.logging, task.log_episodes, folder / "logs.db",
                         dataset, network_seed=task.network_seed,
                         reward_credit=task.settings.reward_credit,
                         obs_layout=task.settings.obs_layout, params=params)
    log_seconds = time.perf_counter() - start
    result = train_seed(SeedJob(scenario, network, plan, task.unit.seed, str(folder), str(dataset),
                                task.settings, show_progress=False))
    # The task log and the data set are rebuilt at any time from the seeds (o2o collect).
    dataset.unlink()
    for name in ("logs.db", "logs.db-wal", "logs.db-shm"):
        (folder / name).unlink(missing_ok=True)
    seconds = {"log": log_seconds, **result.seconds}
    logs = {"heuristic": task.logging, "episodes": logged.episodes, "task_rows": logged.task_rows,
            "success_rate": logged.success_rate, **({"params": params} if params else {})}
    curves = {"offline-only": result.offline_curve, "o2o-drl": result.o2o_curve,
              "online-only": result.online_only_curve}
    count, what = probes_per_decision(network.n, task.settings.obs_layout)
    return [_cell(task, m, result.final[m], {"curve": curves[m], "seconds": seconds, "logs": logs,
                                             "probes_per_task": count, "probes_note": what})
            for m in task.unit.methods]


def _testbed_setup(task: UnitTask):
    from o2o.testbed import wire
    from o2o.testbed.phase import TestbedSetup

    network = sample_network(task.scenario, task.network_seed)
    return TestbedSetup(task.scenario, network, wire.NodeRuntime(), network_seed=task.network_seed)


def _testbed_info(run) -> dict[str, Any]:
    metrics = run.metrics()
    return {k: int(np.sum(metrics[k])) for k in ("tasks", "success", "drop", "exec_fail", "trans_fail")}


def _testbed_heuristics(task: UnitTask) -> list[Cell]:
    """Every decentralized heuristic on one testbed; a tunable rule runs on the nodes at its
    values for this point and network, as in the simulator's cells (the given record, or tuned
    in the simulator on validation episodes first), kept in the cell's info."""
    from o2o.experiments.testbed_job import run_testbed_heuristics

    folder = _fresh_folder(task)
    setup = _testbed_setup(task)
    tuning = tuned_rules(task.unit.methods, setup.scenario, setup.network, network_seed=task.network_seed,
                         given=task.tuned)
    runs = run_testbed_heuristics(setup, list(task.unit.methods), list(task.eval_seeds),
                                  db=str(folder / "logs.db"),
                                  params={k: v["params"] for k, v in tuning.items()})
    return [_cell(task, name, run.metrics()["success_rate"],
                  {**_testbed_info(run), **({"tuned": summary(tuning[name])} if name in tuning else {})})
            for name, run in runs.items()]


def _testbed_training(task: UnitTask) -> list[Cell]:
    import torch

    folder = _fresh_folder(task)
    start = time.perf_counter()
    # One torch thread, as every unit: beside 10 node processes on the same cores, more threads
    # only wait for each other (measured: 1000 offline steps took minutes with the default).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = _run_testbed_o2o(task, folder)
    finally:
        torch.set_num_threads(threads)
    info = {"seconds": {"pipeline": time.perf_counter() - start}, "versions": report.versions,
            "logs": {"heuristic": task.logging, "run": report.collect_run,
                     "episodes": task.plan.collect_episodes,
                     **({"params": report.log_params} if report.log_params else {})}}
    return [_cell(task, m, report.runs[m].metrics()["success_rate"], {**info, **_testbed_info(report.runs[m])})
            for m in task.unit.methods]


def _run_testbed_o2o(task: UnitTask, folder: Path):
    from o2o.experiments.testbed_job import run_testbed_o2o

    return run_testbed_o2o(_testbed_setup(task), task.plan, task.settings,
                           db=str(folder / "logs.db"), model_store=str(folder / "models"),
                           heuristic=task.logging, baselines=[], training_seed=task.unit.seed,
                           eval_seeds=list(task.eval_seeds),
                           online_only="online-only" in task.unit.methods,
                           evaluate_heuristic=False,
                           tuned=task.tuned)


def eval_seeds(plan) -> tuple[int, ...]:
    """The held-out episodes of every method at every point."""
    return tuple(seeds.TEST.take(plan.eval_episodes))


def worker_init() -> None:
    """In a worker process of the local pool: one thread for torch and BLAS (every worker is
    one core), Ctrl-C left to the sweep's process (which stops the pool), and, on Linux, the
    worker dies with that process (kill -9 included) instead of finishing a unit nobody
    will write."""
    import signal

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
