"""How a task ends (paper III, eqs. 3-5 and 9): the outcome codes, the drop and failure rules of
one FIFO stage, and the +1/-1 feedback an outcome gives.

The codes are those stored in the task log (``EMPTY``: no task in that node-slot; ``PENDING``: a
task whose outcome is not known yet). The simulator's engine and the testbed's nodes apply the
same two rules, written once here:

* a task is **dropped** at the head of a queue when it can no longer meet its deadline:
  ``start + stage + after > due`` (``after``: the execution still ahead of a transmission, 0 at
  the execution queue), and then uses no more resources;
* a stage **fails** when its exponential failure clock (rate beta_ij for a transmission, alpha_j
  for an execution) runs out inside the stage: ``fail_after < stage``.
"""

from __future__ import annotations

import numpy as np

EMPTY, PENDING, SUCCESS, DROP, EXEC_FAIL, TRANS_FAIL = 0, 1, 2, 3, 4, 5
OUTCOME_NAMES = {EMPTY: "EMPTY", PENDING: "PENDING", SUCCESS: "SUCCESS", DROP: "DROP",
                 EXEC_FAIL: "EXECUTION_FAILURE", TRANS_FAIL: "TRANSMISSION_FAILURE"}
OUTCOME_CODES = {name: code for code, name in OUTCOME_NAMES.items()}

# Times that should be exact multiples of the slot length are compared with this tolerance, so
# an outcome on a slot boundary falls in the same slot everywhere (simulator, logs, testbed).
SLOT_TOL = 1e-9


def misses_deadline(start_s, stage_s, after_s, due_s):
    """The drop rule at the head of a queue: starting now, the task cannot finish by its
    deadline (``after_s``: work still ahead of this stage, the execution after a transmission)."""
    return start_s + stage_s + after_s > due_s


def fails_during(fail_after_s, stage_s):
    """The failure rule of a stage: its failure clock runs out before the stage ends."""
    return fail_after_s < stage_s


def outcome_feedback(outcome) -> np.ndarray:
    """Per task +1 for SUCCESS, -1 for any other final outcome, 0 where there is no task."""
    outcome = np.asarray(outcome)
    return np.where(outcome == EMPTY, 0.0, np.where(outcome == SUCCESS, 1.0, -1.0))


def end_slot(end_s, slot_s: float, slots: int) -> np.ndarray:
    """The slot in which an outcome at ``end_s`` (seconds since the episode start) ended, with
    outcomes after slot T-1 counted in T-1 (the drain belongs to the last step)."""
    slot = np.floor(np.asarray(end_s) / slot_s + SLOT_TOL).astype(np.int64)
    return np.clip(slot, 0, slots - 1)
