"""Offline RL data sets from task logs: a dict of flat arrays, saved as a plain ``.npz``.

One row per node-slot of every logged episode, in the order (run, episode index, slot, node).
N = nodes, D = 3N + 6 (the observation of ``o2o.core.decpomdp``), A = N + 1 actions.

=====================  ===========  ========  ================================================
array                  shape        dtype     meaning
=====================  ===========  ========  ================================================
observations           (M, D)       float32   o_t^i, every element in [0, 1]
actions                (M,)         int64     a_t^i: 0..N-1 destination, N = no task
rewards                (M,)         float32   team reward r_t (SPEC 4), not normalised
next_observations      (M, D)       float32   o_{t+1}^i (after the last slot: no task)
terminals              (M,)         bool      True at the last slot t = T-1
action_masks           (M, A)       bool      available actions at o (the true mask; a
                                              heuristic's action may be masked, see below)
next_action_masks      (M, A)       bool      available actions at o'
episode_ids            (M,)         int64     the episode's id in the task-log database
node_ids               (M,)         int64     the node i
run_ids                (M,)         int64     the run's id in the database
slots                  (M,)         int64     the slot t
action_probs           (M,)         float32   probability the logging scheduler gave a_t^i
                                              (NaN: unknown, e.g. a deterministic rule)
obs_layout             ()           str       observation layout version (o2o-obs-v1)
reward_credit          ()           str       ``slot`` or ``decision`` (SPEC 4)
=====================  ===========  ========  ================================================

Rows where ``action_masks[k, actions[k]]`` is False are real decisions of a heuristic that sent
a task to a node whose overload flag was set (RATC and ESF do not read the flag); they are kept
as they happened. The file holds no Python objects: ``numpy.load(path, allow_pickle=False)``
reads it, and so does any tool that reads ``.npz``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from o2o.core.decpomdp import OBS_LAYOUT_VERSION, REWARD_CREDITS
from o2o.core.errors import UserError
from o2o.logs.store import LogStore
from o2o.logs.transitions import rebuild_transitions

# Arrays with one row per node-slot, in the order they are written.
ROW_ARRAYS = ("observations", "actions", "rewards", "next_observations", "terminals",
              "action_masks", "next_action_masks", "episode_ids", "node_ids", "run_ids", "slots",
              "action_probs")
META_ARRAYS = ("obs_layout", "reward_credit")
# What any data set must hold (the layout); an export adds the rest of ROW_ARRAYS and
# META_ARRAYS, and a user's own .npz with these arrays trains as well.
CORE_ARRAYS = ROW_ARRAYS[:9]
DATASET_ARRAYS = ROW_ARRAYS + META_ARRAYS
_DTYPES = {"observations": np.float32, "actions": np.int64, "rewards": np.float32,
           "next_observations": np.float32, "terminals": np.bool_, "action_masks": np.bool_,
           "next_action_masks": np.bool_, "episode_ids": np.int64, "node_ids": np.int64,
           "run_ids": np.int64, "slots": np.int64, "action_probs": np.float32}


def build_dataset(store: LogStore | str | Path, run_ids: Iterable[int] | None = None,
                  reward_credit: str = "slot",
                  progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """The data set of the given runs (default: every run in the log), as a dict of arrays
    with the layout in the module docstring. ``store`` is an open :class:`LogStore` or what
    ``--db`` accepts. ``progress(k)`` is called after every k episodes read.

    Interrupted runs contribute their finished episodes (an episode is written whole or not at
    all). All runs must have the same number of nodes (the observation size depends on it).
    """
    if reward_credit not in REWARD_CREDITS:
        raise UserError(f"--reward-credit must be one of {', '.join(REWARD_CREDITS)}, "
                        f"got {reward_credit!r}")
    if not isinstance(store, LogStore):
        with LogStore.open(store) as opened:
            return build_dataset(opened, run_ids, reward_credit, progress)
    known = {info.id: info for info in store.runs()}
    ids = sorted(known) if run_ids is None else list(dict.fromkeys(int(r) for r in run_ids))
    missing = [r for r in ids if r not in known]
    if missing:
        raise UserError(f"no run {', '.join(map(str, missing))} in the task log "
                        f"(runs: {', '.join(map(str, sorted(known))) or 'none'})")
    if not ids:
        raise UserError("the task log has no runs to export")
    node_counts = {known[r].nodes for r in ids}
    if len(node_counts) > 1:
        raise UserError(f"runs {ids} have different numbers of nodes {sorted(node_counts)}; "
                        "export them separately (--run ID)")
    for r in ids:
        if known[r].obs_layout != OBS_LAYOUT_VERSION:
            raise UserError(f"run {r} was logged with observation layout {known[r].obs_layout}; "
                            f"this o2o builds {OBS_LAYOUT_VERSION}")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ROW_ARRAYS}
    for r in ids:
        info = known[r]
        scenario, network = info.scenario, store.network(r)
        n, t_slots = info.nodes, info.slots
        batch_ids, batch_logs = [], []

        def flush():
            if not batch_logs:
                return
            tr = rebuild_transitions(scenario, network, batch_logs, reward_credit)
            e = len(batch_logs)
            rows = e * t_slots * n
            parts["observations"].append(tr.observations.reshape(rows, -1))
            parts["next_observations"].append(tr.next_observations.reshape(rows, -1))
            parts["action_masks"].append(tr.action_masks.reshape(rows, -1))
            parts["next_action_masks"].append(tr.next_action_masks.reshape(rows, -1))
            parts["actions"].append(tr.actions.reshape(rows))
            parts["action_probs"].append(tr.action_probs.reshape(rows).astype(np.float32))
            # The team reward and the terminal flag are per slot: every node gets them.
            parts["rewards"].append(np.repeat(tr.rewards.reshape(-1), n))
            parts["terminals"].append(np.repeat(tr.terminals.reshape(-1), n))
            parts["episode_ids"].append(np.repeat(np.asarray(batch_ids, dtype=np.int64), t_slots * n))
            parts["node_ids"].append(np.tile(np.arange(n, dtype=np.int64), e * t_slots))
            parts["slots"].append(np.tile(np.repeat(np.arange(t_slots, dtype=np.int64), n), e))
            parts["run_ids"].append(np.full(rows, r, dtype=np.int64))
            if progress is not None:
                progress(e)
            batch_ids.clear()
            batch_logs.clear()

        for episode_id, log in store.read_episodes(r):
            batch_ids.append(episode_id)
            batch_logs.append(log)
            if len(batch_logs) == 64:
                flush()
        flush()
    n = known[ids[0]].nodes
    empty_shapes = {"observations": (0, 3 * n + 6), "next_observations": (0, 3 * n + 6),
                    "action_masks": (0, n + 1), "next_action_masks": (0, n + 1)}
    data = {name: (np.concatenate(chunks) if chunks else np.zeros(empty_shapes.get(name, (0,))))
            .astype(_DTYPES[name], copy=False) for name, chunks in parts.items()}
    data["obs_layout"] = np.array(OBS_LAYOUT_VERSION)
    data["reward_credit"] = np.array(reward_credit)
    return data


def save_dataset(dataset: dict[str, np.ndarray], path: str | Path, compress: bool = False) -> Path:
    """Write the data set as ``.npz`` (numpy adds the suffix if it is missing)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    missing = [k for k in DATASET_ARRAYS if k not in dataset]
    if missing:
        raise ValueError(f"data set lacks arrays {missing}")
    (np.savez_compressed if compress else np.savez)(path, **dataset)
    return path


def load_dataset(path: str | Path) -> dict[str, np.ndarray]:
    """Read a data set written by :func:`save_dataset` (numpy only, no pickle) and check it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data set {path} does not exist; export one from task logs with "
                        "'o2o dataset export --db ... --out ...'")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (ValueError, OSError) as exc:
        raise UserError(f"{path} is not a readable .npz data set ({exc})") from None
    missing = [k for k in CORE_ARRAYS if k not in data]
    if missing:
        raise UserError(f"{path} is not an o2o data set: it lacks {', '.join(missing)}")
    rows = {data[k].shape[0] for k in ROW_ARRAYS if k in data}
    if len(rows) != 1:
        raise UserError(f"{path}: its arrays disagree on the number of rows")
    return data
