"""Every cell read back from a results database is checked before a report is drawn from it.

A results database is a file a user can open and edit (or another program can write): a cell
whose success rates are not numbers in [0, 1], whose count of held-out episodes is not the
plan's, or whose point, method or seed the sweep does not have, would make a report that says
something false (a rate of -1.67) or crash half-way through writing it. Such a database is
refused in one line naming the cell, before any file of the report is written.
"""

from __future__ import annotations

import math
from typing import Any

from o2o.core.limits import MAX_TRAINING_SEEDS
from o2o.experiments.methods import LEARNED
from o2o.experiments.results_db import NO_SEED, Cell, DamagedCell, damaged
from o2o.experiments.sweeps import BOUND_TASK, Sweep, all_methods


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _rate(value: Any) -> bool:
    return _number(value) and 0.0 <= value <= 1.0


def _check_curve(curve: Any) -> None:
    if not isinstance(curve, list):
        raise DamagedCell("info.curve is not a list")
    for k, point in enumerate(curve):
        if not isinstance(point, dict):
            raise DamagedCell(f"info.curve[{k}] is not an object")
        if "success_rate" in point and not _rate(point["success_rate"]):
            raise DamagedCell(f"info.curve[{k}].success_rate is {point['success_rate']!r}, not a "
                              "rate in [0, 1]")
        for key in ("episodes", "step"):
            if key in point and not (isinstance(point[key], int) and not isinstance(point[key], bool)
                                     and point[key] >= 0):
                raise DamagedCell(f"info.curve[{k}].{key} is {point[key]!r}, not a count")


def check_cell(sweep: Sweep, cell: Cell) -> None:
    """Raise ``DamagedCell`` saying what is wrong with ``cell`` for ``sweep``."""
    if not (isinstance(cell.point, int) and 0 <= cell.point < len(sweep.points)):
        raise DamagedCell(f"the sweep has no point {cell.point!r} (points 0..{len(sweep.points) - 1})")
    if cell.method not in (*all_methods(), BOUND_TASK):  # the bound's unit writes both bounds
        raise DamagedCell(f"unknown method {cell.method!r}")
    trained = cell.method in LEARNED
    if not isinstance(cell.seed, int) or isinstance(cell.seed, bool) or \
            (trained and not 0 <= cell.seed < MAX_TRAINING_SEEDS) or (not trained and cell.seed != NO_SEED):
        raise DamagedCell(f"seed {cell.seed!r} is not a training seed of {cell.method}"
                          + ("" if trained else f" (it is not trained: seed {NO_SEED})"))
    rates = cell.rates
    if not isinstance(rates, list):
        raise DamagedCell("rates is not a list of success rates")
    episodes = sweep.plan.eval_episodes
    if len(rates) != episodes:
        raise DamagedCell(f"rates holds {len(rates)} episodes, the plan {episodes}")
    for k, rate in enumerate(rates):
        if not _rate(rate):
            raise DamagedCell(f"rates[{k}] is {rate!r}, not a success rate in [0, 1]")
    if not isinstance(cell.info, dict):
        raise DamagedCell("info is not an object")
    if "curve" in cell.info:
        _check_curve(cell.info["curve"])
    if "cpu_s" in cell.info and not (_number(cell.info["cpu_s"]) and cell.info["cpu_s"] >= 0):
        raise DamagedCell(f"info.cpu_s is {cell.info['cpu_s']!r}, not seconds")
    if "unit" in cell.info and not isinstance(cell.info["unit"], str):
        raise DamagedCell(f"info.unit is {cell.info['unit']!r}, not a name")
    if not (_number(cell.seconds) and cell.seconds >= 0):
        raise DamagedCell(f"seconds is {cell.seconds!r}, not a time")


def check_cells(sweep: Sweep, cells: list[Cell], where: str) -> list[Cell]:
    """``cells``, every one checked; a damaged one refuses the database in one line."""
    for cell in cells:
        try:
            check_cell(sweep, cell)
        except DamagedCell as exc:
            raise damaged(where, cell.point, cell.method, cell.seed, str(exc)) from None
    return cells

