"""Running a sweep (``o2o figure NAME``, ``o2o sweep SPEC.yaml``): the cells of every point,
resumable, on a local process pool or a Ray cluster, then the report.

1. Everything that can be checked is checked before anything is written: the output folder,
   the executor (Ray installed?), the memory of the workers and their data sets. Then the
   results database is opened (created on the first run) and checked to belong to this sweep
   (spec and plan); every cell read back is checked too (``o2o.experiments.cell_checks``).
2. The units still to do are those with a cell missing from the database; a finished unit is
   never computed again, so a sweep stopped at any moment (Ctrl-C, a crash, kill -9) resumes
   where it stopped and ends with the same numbers as one that ran through.
3. Simulator units go to the executor, the largest first; each unit's cells are written in one
   transaction by this process as soon as it comes back. Testbed units (Fig. 8) then run one at
   a time in this process whatever the executor: a local testbed is 10 node processes on this
   machine and its timing is part of the measurement, so nothing else runs beside it.
4. The report (``NAME.json``, ``NAME.md``, ``NAME.png``) is drawn from the database alone;
   ``report_only`` skips 2-3.

Held-out episodes are the first ``eval_episodes`` of ``TEST`` at every point, for every method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from o2o.core.limits import check_memory, check_testbed, check_workers, dataset_bytes
from o2o.core.outputs import check_output_folder
from o2o.core.progress import progress_bar
from o2o.experiments.cell_checks import check_cells
from o2o.experiments.cells import Unit, UnitTask, eval_seeds, run_unit, worker_init
from o2o.experiments.executors import check_executor, cpu_count, make_executor
from o2o.experiments.figure_report import write_report
from o2o.experiments.methods import CENTRAL_METHODS
from o2o.experiments.results_db import NO_SEED, ResultsDB
from o2o.experiments.sweeps import BOUND, BOUND_TASK, Sweep
from o2o.experiments.tuning import DEFAULT_EPISODES as TUNE_EPISODES
from o2o.experiments.tuning import GRIDS, candidates
from o2o.learn.settings import learner_settings
from o2o.sim.central import FINISH_WEIGHTS, ORDERS

# Rough seconds per unit of work on one core of the development machine, for the progress
# bar's estimate of the time left (it corrects itself from the measured rate as cells finish).
SIM_NODE_SLOT_S = 1.5e-6
CENTRAL_NODE_SLOT_S = 3e-5
LP_EPISODE_S = 1.5          # the bound's LP per paper-sim episode; ~ nodes^2 x slots (10 s at 50 nodes)
LOG_NODE_SLOT_S = 3e-5
ONLINE_NODE_SLOT_S = 2.5e-5
OFFLINE_STEP_S = 8e-3
TESTBED_EPISODE_OVERHEAD_S = 1.5


@dataclass
class SweepOutcome:
    report: dict[str, Any]
    computed_units: int
    skipped_units: int
    seconds: float


def plan_units(sweep: Sweep) -> list[Unit]:
    """Every unit of the sweep, each writing its cells (point x method x seed)."""
    units: list[Unit] = []
    scenario_points = sorted({p.scenario_key for p in sweep.points})
    central = [m for m in sweep.heuristics if m in CENTRAL_METHODS]
    decentralized = [m for m in sweep.heuristics if m not in CENTRAL_METHODS]
    for h in scenario_points:
        if sweep.testbed:
            if decentralized:
                units.append(Unit("testbed-heuristics", h, tuple(decentralized)))
            units += [Unit("heuristic", h, (m,)) for m in central]
        else:
            units += [Unit("heuristic", h, (m,)) for m in sweep.heuristics]
        if BOUND in sweep.methods:
            units.append(Unit("bound", h, (BOUND, BOUND_TASK)))
    if sweep.learned:
        kind = "testbed-training" if sweep.testbed else "training"
        units += [Unit(kind, p.index, sweep.learned, k) for p in sweep.points for k in range(sweep.seeds)]
    return units


def unit_weight(sweep: Sweep, unit: Unit) -> float:
    """Estimated seconds of ``unit`` on one core (for the time left, and to start the largest
    units first)."""
    point = sweep.points[unit.point]
    sc, plan = point.scenario, sweep.plan
    node_slots = sc.nodes * sc.slots
    # Tuning a rule that has no --tuned record here, in the simulator, before it runs.
    tuning = sum(len(candidates(m)) * TUNE_EPISODES * node_slots * SIM_NODE_SLOT_S
                 for m in unit.methods if m in GRIDS and sweep.tuned_for(point, m) is None)
    if unit.kind == "heuristic":
        if unit.methods[0] in CENTRAL_METHODS:  # central also runs its grid on each episode
            grid = len(FINISH_WEIGHTS) * len(ORDERS) if unit.methods == ("central",) else 0
            return plan.eval_episodes * (1 + grid) * node_slots * CENTRAL_NODE_SLOT_S + 0.2
        return plan.eval_episodes * node_slots * SIM_NODE_SLOT_S + tuning + 0.2
    if unit.kind == "bound":
        return plan.eval_episodes * LP_EPISODE_S * (sc.nodes / 20) ** 2 * sc.slots / 100 + 0.1
    if unit.kind == "training":
        return (sweep.log_episodes(point) * node_slots * LOG_NODE_SLOT_S
                + plan.offline_steps * OFFLINE_STEP_S * max(1.0, sc.nodes / 20)
                + 2 * plan.online_episodes * node_slots * ONLINE_NODE_SLOT_S
                + (plan.offline_points + 2 * plan.online_episodes / plan.online_eval_every + 3)
                * plan.curve_episodes * node_slots * SIM_NODE_SLOT_S * 20)
    episode_s = sc.slots * sc.slot_s + sc.max_deadline_s + TESTBED_EPISODE_OVERHEAD_S
    if unit.kind == "testbed-heuristics":
        return len(unit.methods) * plan.eval_episodes * episode_s + tuning + 10
    online = plan.online_rounds * plan.episodes_per_round
    runs = plan.collect_episodes + online * (1 + ("online-only" in unit.methods))
    return ((runs + len(unit.methods) * plan.eval_episodes) * episode_s
            + plan.offline_steps * OFFLINE_STEP_S + 15)


def unit_task(sweep: Sweep, unit: Unit, out: Path) -> UnitTask:
    point = sweep.points[unit.point]
    settings = learner_settings(sweep.spec.settings)
    seed = "" if unit.seed == NO_SEED else f"-s{unit.seed}"
    what = unit.kind if len(unit.methods) > 1 else unit.methods[0]
    folder = out / "cells" / f"p{unit.point}-{what}{seed}"
    log_episodes = sweep.log_episodes(point) if not sweep.testbed else sweep.plan.collect_episodes
    # The --tuned records of the rules the unit runs: a heuristic unit's, or a learner unit's
    # logging rule.
    rules = (point.logging,) if unit.kind in ("training", "testbed-training") else unit.methods
    tuned = {name: {k: v for k, v in record.items() if k != "candidates"} for name in rules
             if (record := sweep.tuned_for(point, name)) is not None}
    return UnitTask(unit, point.scenario, sweep.spec.network_seed, point.value, point.logging,
                    sweep.plan, log_episodes, settings, eval_seeds(sweep.plan), str(folder), tuned or None)


def check_resources(sweep: Sweep, units: list[Unit], workers: int) -> None:
    """Refuse, before anything runs, a sweep whose worker processes and data sets do not fit
    in memory (``workers`` > 1: each unit in a process of its own)."""
    sim = [u for u in units if not u.on_testbed]
    training = [u for u in sim if u.kind == "training"]
    data, what = 0, ""
    if training:
        layout = learner_settings(sweep.spec.settings).obs_layout
        biggest = max(training, key=lambda u: dataset_bytes(sweep.points[u.point].scenario,
                                                             sweep.log_episodes(sweep.points[u.point]),
                                                             layout))
        point = sweep.points[biggest.point]
        data = dataset_bytes(point.scenario, sweep.log_episodes(point), layout)
        what = (f"data sets of {sweep.log_episodes(point)} episodes of {point.scenario.nodes} "
                "nodes")
        check_memory(data * min(workers, len(training)),
                     f"{min(workers, len(training))} training units at once ({what})",
                     "use fewer --workers, or a plan with fewer log_episodes")
    processes = min(workers, len(sim)) if workers > 1 else 0
    if processes:
        check_workers(processes, what or "the sweep's units", data)
    if any(u.on_testbed for u in units):
        check_testbed(max(p.scenario.nodes for p in sweep.points))


def planned_workers(executor: str, workers: int | None) -> int:
    """The worker processes a sweep will start on this machine (a Ray cluster reached by
    ``--address`` has its own: counted as 1 here)."""
    return max(1, workers or cpu_count())


def open_results(sweep: Sweep, db: str | Path, *, create: bool) -> ResultsDB:
    return ResultsDB.open(db, name=sweep.name, plan=sweep.plan_name, spec_hash=sweep.spec_hash(),
                          spec=sweep.identity(), create=create)


def run_sweep(sweep: Sweep, out: Path, *, db: str | Path | None = None, executor: str = "local",
              address: str | None = None, workers: int | None = None, report_only: bool = False,
              show_progress: bool = True, say: Callable[[str], None] = print) -> SweepOutcome:
    """Compute the sweep's missing cells into its results database and write its report."""
    out = Path(out)
    check_output_folder(out, "--out")
    db = db if db is not None else out / "results.db"
    if not report_only:
        check_executor(executor)
        check_resources(sweep, plan_units(sweep),
                        1 if address else planned_workers(executor, workers))
    start = time.perf_counter()
    with open_results(sweep, db, create=not report_only) as results:
        computed = skipped = 0
        if not report_only:
            computed, skipped = _compute(sweep, out, results, executor=executor, address=address,
                                         workers=workers, show_progress=show_progress, say=say)
        cells = check_cells(sweep, results.read(), results.where)
    report = write_report(sweep, cells, out)
    return SweepOutcome(report, computed, skipped, time.perf_counter() - start)


def _compute(sweep: Sweep, out: Path, results: ResultsDB, *, executor: str, address: str | None,
             workers: int | None, show_progress: bool, say: Callable[[str], None]) -> tuple[int, int]:
    units = plan_units(sweep)
    done = results.finished()
    todo = [u for u in units if not set(u.keys()) <= done]
    skipped = len(units) - len(todo)
    if skipped:
        say(f"{sweep.name}: {skipped} of {len(units)} units already finished in {results.where}")
    if not todo:
        return 0, skipped
    weights = {u: unit_weight(sweep, u) for u in todo}
    sim = sorted((u for u in todo if not u.on_testbed), key=lambda u: -weights[u])
    testbed = [u for u in todo if u.on_testbed]
    cells_total = sum(len(u.methods) for u in todo)
    # The bar advances by each unit's estimated cost, so the time left is an estimate of the
    # remaining work, not of the remaining count of cells.
    bar_format = "{desc} {percentage:3.0f}%|{bar}| [{elapsed}, {remaining} left]"
    with progress_bar(total=sum(weights.values()), desc=f"{sweep.name}: 0/{cells_total} cells",
                      unit="s", bar_format=bar_format, disable=not show_progress) as bar:
        cells_done = 0

        def finished(unit: Unit, cells) -> None:
            nonlocal cells_done
            results.write(cells)
            cells_done += len(cells)
            bar.set_description_str(f"{sweep.name}: {cells_done}/{cells_total} cells", refresh=False)
            bar.update(weights[unit])

        if sim:
            ex = make_executor(executor, workers=workers, address=address, initializer=worker_init)
            try:
                check_resources(sweep, sim, ex.workers)
                tasks = [unit_task(sweep, u, out) for u in sim]
                for i, cells in ex.run(run_unit, tasks):
                    finished(sim[i], cells)
            finally:
                ex.close()
        if testbed:
            check_resources(sweep, testbed, 1)
            for unit in testbed:
                finished(unit, run_unit(unit_task(sweep, unit, out)))
    return len(todo), skipped
