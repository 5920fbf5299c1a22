"""The paper's observation (IV-B1) and action mask as compiled loops (numba), row by row.

``o2o.core.decpomdp.Observer`` calls these; every value is computed by one definition
(``_observe_row``, ``_mask_row``) with the same floating-point operations as array code
would use (a division, then clipping; float32 by rounding the float64 result), so the
observations are the same to the bit whichever caller builds them. One call per batch of rows
keeps the cost of a step of one episode (20 rows) at a few microseconds.
"""

from __future__ import annotations

from numba import njit, types


# Every input is read only (any layout, writeable or not); what the callers pass is converted to
# these types, so the loops are compiled once, when this module is first imported (a testbed
# node imports it while it prepares, never in the middle of a decision).
def _ro(dtype, ndim: int) -> types.Array:
    return types.Array(dtype, ndim, "A", readonly=True)


_F1, _F2 = _ro(types.float64, 1), _ro(types.float64, 2)
_I1, _I2, _I3 = _ro(types.int64, 1), _ro(types.int64, 2), _ro(types.int64, 3)
_B1, _B2 = _ro(types.boolean, 1), _ro(types.boolean, 2)


@njit(inline="always")
def _observe_row(row, static_i, others_i, exec_len, recv_len, has, size_bytes, cycles, deadline_s,
                 queue_scale, task_scale):
    """The v1 observation of one node into ``row`` (>= 3N + 6): its static columns, l_i and
    l^r_ij (``recv_len`` (N,): tasks in flight from j to the node) scaled by ``queue_scale`` and
    clipped at 1, the task's s, c, d scaled by ``task_scale`` and clipped into [0, 1] (zeros
    without a task)."""
    n = others_i.shape[0] + 1
    row[:3 * n + 6] = static_i
    row[n + 3] = min(exec_len / queue_scale, 1.0)
    for c in range(n - 1):
        row[n + 4 + c] = min(recv_len[others_i[c]] / queue_scale, 1.0)
    if has:
        row[3 * n + 3] = min(max(size_bytes / task_scale[0], 0.0), 1.0)
        row[3 * n + 4] = min(max(cycles / task_scale[1], 0.0), 1.0)
        row[3 * n + 5] = min(max(deadline_s / task_scale[2], 0.0), 1.0)
    else:
        row[3 * n + 3] = 0.0
        row[3 * n + 4] = 0.0
        row[3 * n + 5] = 0.0


@njit(inline="always")
def _mask_row(row, i, has, overloaded):
    """The action mask of node i (N + 1,): with a task, the node itself and every peer whose
    overload flag is not set; without one, only the no-task action N."""
    n = overloaded.shape[0]
    for j in range(n):
        row[j] = has and not overloaded[j]
    row[i] = has
    row[n] = not has


@njit(types.void(types.float64[:, :], _F2, _I1, _F1, _F2, _I2, _B1, _F1, _F1, _F1, types.float64, _F1),
      cache=True)
def fill_v1(out, static, node, exec_len, recv_len, others, has_task, size_bytes, cycles,
            deadline_s, queue_scale, task_scale):
    """The v1 observation of every row into ``out`` (M, >= 3N + 6); row r is node ``node[r]``
    (``static`` (N, 3N + 6): the nodes' static columns; ``others`` (N, N-1): the other nodes
    of each node, ascending; ``recv_len`` (M, N))."""
    for r in range(out.shape[0]):
        i = node[r]
        _observe_row(out[r], static[i], others[i], exec_len[r], recv_len[r], has_task[r], size_bytes[r],
                     cycles[r], deadline_s[r], queue_scale, task_scale)


@njit(types.void(types.boolean[:, :], _I1, _B1, _B2), cache=True)
def fill_mask(out, node, has_task, overloaded):
    """The action mask of every row into ``out`` (M, N + 1); row r is node ``node[r]``."""
    for r in range(out.shape[0]):
        _mask_row(out[r], node[r], has_task[r], overloaded[r])


@njit(types.void(types.float32[:, :, :], types.boolean[:, :, :], _F2, _I2, _I2, _I3, _B2, _B2, _F2, _F2,
                 _F2, types.float64, _F1), cache=True)
def fill_episodes_v1(obs, mask, static, others, exec_len, in_flight, overloaded, has_task, size_bytes,
                     cycles, deadline_s, queue_scale, task_scale):
    """The v1 observation (float32) and the mask of every node of B episodes at once, into
    ``obs`` (B, N, 3N + 6) and ``mask`` (B, N, N + 1): node i of episode b sees its own queue
    ``exec_len[b, i]``, its receiving queues ``in_flight[b, i]`` and every node's flag
    ``overloaded[b]`` (the vector env's observation)."""
    B, n = has_task.shape
    for b in range(B):
        for i in range(n):
            _observe_row(obs[b, i], static[i], others[i], exec_len[b, i], in_flight[b, i], has_task[b, i],
                         size_bytes[b, i], cycles[b, i], deadline_s[b, i], queue_scale, task_scale)
            _mask_row(mask[b, i], i, has_task[b, i], overloaded[b])
