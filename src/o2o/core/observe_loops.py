"""The paper's observation (IV-B1) and action mask as compiled loops (numba), row by row.

``o2o.core.decpomdp.Observer`` calls these; they compute every value with the same
floating-point operations as array code would (a division, then clipping), so the
observations are the same to the bit whichever caller builds them. One call per batch of rows
keeps the cost of a step of one episode (20 rows) at a few microseconds.
"""

from __future__ import annotations

from numba import njit, types

# Every input is read only (any layout, writeable or not); what the callers pass is converted to
# these types, so the loops are compiled once, when this module is first imported (a testbed
# node imports it while it prepares, never in the middle of a decision).
_IN = {dt: {dims: types.Array(getattr(types, dt), dims, "A", readonly=True) for dims in (1, 2)}
       for dt in ("float64", "int64", "boolean")}
_F1, _F2, _I1, _I2, _B1, _B2 = (_IN["float64"][1], _IN["float64"][2], _IN["int64"][1], _IN["int64"][2],
                                _IN["boolean"][1], _IN["boolean"][2])


@njit(types.void(types.float64[:, :], _F2, _I1, _F1, _F2, _I2, _B1, _F1, _F1, _F1, types.float64, _F1),
      cache=True)
def fill_v1(out, static, node, exec_len, recv_len, others, has_task, size_bytes, cycles,
            deadline_s, queue_scale, task_scale):
    """Write the v1 observation (3N + 6 columns) of every row into ``out`` (M, >= 3N + 6):
    the static columns of the row's node (``static`` (N, 3N + 6)), l_i and l^r_ij scaled by ``queue_scale`` and clipped at 1, the
    task's s, c, d scaled by ``task_scale`` and clipped into [0, 1] (zeros without a task).
    ``recv_len`` (M, N): tasks in flight from j to the row's node; ``others`` (N, N-1): the
    other nodes of each node, ascending."""
    m = out.shape[0]
    n = others.shape[0]
    d1 = 3 * n + 6
    for r in range(m):
        row = out[r]
        i = node[r]
        row[:d1] = static[i]
        row[n + 3] = min(exec_len[r] / queue_scale, 1.0)
        for c in range(n - 1):
            row[n + 4 + c] = min(recv_len[r, others[i, c]] / queue_scale, 1.0)
        if has_task[r]:
            row[3 * n + 3] = min(max(size_bytes[r] / task_scale[0], 0.0), 1.0)
            row[3 * n + 4] = min(max(cycles[r] / task_scale[1], 0.0), 1.0)
            row[3 * n + 5] = min(max(deadline_s[r] / task_scale[2], 0.0), 1.0)
        else:
            row[3 * n + 3] = 0.0
            row[3 * n + 4] = 0.0
            row[3 * n + 5] = 0.0


@njit(types.void(types.boolean[:, :], _I1, _B1, _B2), cache=True)
def fill_mask(out, node, has_task, overloaded):
    """The action mask of every row into ``out`` (M, N + 1) bool: with a task, the node itself
    and every peer whose overload flag is not set; without one, only the no-task action N."""
    m, n = overloaded.shape
    for r in range(m):
        has = has_task[r]
        for j in range(n):
            out[r, j] = has and not overloaded[r, j]
        out[r, node[r]] = has
        out[r, n] = not has
