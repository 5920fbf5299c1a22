"""The file of one data set of a reference suite: the project's data-set layout
(``o2o.logs.dataset``) stored without its duplicate half, written byte for byte reproducibly.

``next_observations`` of node i at slot t < T-1 is ``observations`` of node i at slot t+1 (both
are the observation at boundary t+1, ``o2o.logs.transitions``), so a suite file keeps each
observation once: the rows of every slot, plus the observation after the last slot of every
(episode, node). That halves the file; ``expand`` gives back the full layout, equal to what
``simulated_dataset`` builds (tested). N = nodes, T = slots, E = episodes, M = E T N rows in the
order (episode, slot, node), D the observation length, A = N + 1.

=======================  ===========  ========  ===============================================
array                    shape        dtype     meaning
=======================  ===========  ========  ===============================================
observations             (M, D)       float32   o_t^i
actions                  (M,)         int64     a_t^i: 0..N-1 destination, N = no task
rewards                  (M,)         float32   r_t under ``reward_credit``, not normalised
action_masks             (M, A)       bool      available actions at o_t^i
action_probs             (M,)         float32   the behaviour's probability of a_t^i (NaN:
                                                unknown, e.g. a deterministic rule)
episode_ids              (M,)         int64     the episode seed
node_ids                 (M,)         int64     i
slots                    (M,)         int64     t
final_observations       (E, N, D)    float32   o_T^i, after the last slot (no task)
final_action_masks       (E, N, A)    bool      its mask (only the no-task action)
episode_behaviours       (E,)         str       the scheduler that ran each episode (one name,
                                                or the mixture's draw per episode)
obs_layout               ()           str       observation layout (o2o-obs-v2)
reward_credit            ()           str       ``slot``, ``decision``, ``node`` or
                                                ``counterfactual[-w<w>]``
=======================  ===========  ========  ===============================================

``terminals`` (True at t = T-1) and ``run_ids`` (0) are not stored; ``expand`` adds them.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from o2o.core.errors import UserError
from o2o.logs.dataset import check_dataset, read_npz

ROW_ARRAYS = ("observations", "actions", "rewards", "action_masks", "action_probs",
              "episode_ids", "node_ids", "slots")
SUITE_ARRAYS = (*ROW_ARRAYS, "final_observations", "final_action_masks", "episode_behaviours",
                "obs_layout", "reward_credit")
# A fixed time stamp for every member of the archive: the same arrays give the same bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def compact(data: dict[str, np.ndarray], nodes: int, slots: int,
            episode_behaviours: list[str]) -> dict[str, np.ndarray]:
    """The suite file's arrays of a data set in the project's layout (rows in the order
    (episode, slot, node)). Checks that every ``next_observations`` row is the next slot's
    observation, so that nothing is lost."""
    m = data["actions"].shape[0]
    e = m // (slots * nodes)
    if e * slots * nodes != m or len(episode_behaviours) != e:
        raise ValueError(f"{m} rows are not {len(episode_behaviours)} episodes of {slots} slots "
                         f"x {nodes} nodes")
    obs = data["observations"].reshape(e, slots, nodes, -1)
    nxt = data["next_observations"].reshape(e, slots, nodes, -1)
    masks = data["action_masks"].reshape(e, slots, nodes, -1)
    nxt_masks = data["next_action_masks"].reshape(e, slots, nodes, -1)
    if not (np.array_equal(nxt[:, :-1], obs[:, 1:]) and np.array_equal(nxt_masks[:, :-1], masks[:, 1:])):
        raise ValueError("next_observations are not the next slot's observations")
    out = {k: np.ascontiguousarray(data[k]) for k in ROW_ARRAYS}
    out["final_observations"] = np.ascontiguousarray(nxt[:, -1])
    out["final_action_masks"] = np.ascontiguousarray(nxt_masks[:, -1])
    out["episode_behaviours"] = np.asarray(episode_behaviours, dtype=str)
    out["obs_layout"] = np.asarray(data["obs_layout"])
    out["reward_credit"] = np.asarray(data["reward_credit"])
    return out


def expand(stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The data set in the project's layout (``o2o.logs.dataset``, every array of it), checked:
    what ``o2o train offline`` and the adapters read."""
    e, n, d = stored["final_observations"].shape
    m = stored["actions"].shape[0]
    slots = m // (e * n)
    obs = stored["observations"].reshape(e, slots, n, d)
    masks = stored["action_masks"].reshape(e, slots, n, -1)
    nxt = np.concatenate([obs[:, 1:], stored["final_observations"][:, None]], axis=1)
    nxt_masks = np.concatenate([masks[:, 1:], stored["final_action_masks"][:, None]], axis=1)
    data = {k: stored[k] for k in ROW_ARRAYS}
    data["next_observations"] = nxt.reshape(m, d)
    data["next_action_masks"] = nxt_masks.reshape(m, -1)
    data["terminals"] = stored["slots"] == slots - 1
    data["run_ids"] = np.zeros(m, dtype=np.int64)
    data["obs_layout"] = stored["obs_layout"]
    data["reward_credit"] = stored["reward_credit"]
    return check_dataset(data)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` that ``numpy.load`` reads, the same bytes for the same arrays
    (``numpy.savez`` stamps each member with the current time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def write_suite_file(arrays: dict[str, np.ndarray], path: Path) -> dict[str, int | str]:
    """Write the arrays at ``path`` (renamed into place); returns its bytes and sha256."""
    blob = npz_bytes(arrays)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(blob)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def read_suite_file(path: str | Path) -> dict[str, np.ndarray]:
    """The stored arrays of one suite file (numpy only, no pickle)."""
    data = read_npz(path, "suite data set",
                    "build the suite with 'o2o dataset build --suite v1 --out DIR'",
                    "build the suite again")
    missing = [k for k in SUITE_ARRAYS if k not in data]
    if missing:
        raise UserError(f"{path} is not a suite data set: it lacks {', '.join(missing)}")
    return data
