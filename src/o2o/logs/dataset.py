"""Offline RL data sets from task logs: one layout, built, saved, loaded and checked here.

A data set is a dict of flat numpy arrays, one row per node-slot of every logged episode, in the
order (run, episode, slot, node), saved as a plain ``.npz`` that ``numpy.load(path,
allow_pickle=False)`` reads (and so does any tool that reads ``.npz``). N = nodes,
D = 3N + 6 (the observation of ``o2o.core.decpomdp``), A = N + 1 actions.

=====================  ===========  ========  ================================================
array                  shape        dtype     meaning
=====================  ===========  ========  ================================================
observations           (M, D)       float32   o_t^i, every element in [0, 1]
actions                (M,)         int64     a_t^i: 0..N-1 destination, N = no task
rewards                (M,)         float32   r_t under the data set's reward credit (team
                                              reward, or the node's own under ``node`` and
                                              ``counterfactual``), not normalised
next_observations      (M, D)       float32   o_{t+1}^i (after the last slot: no task)
terminals              (M,)         bool      True at the last slot t = T-1
action_masks           (M, A)       bool      available actions at o (the true mask; a
                                              heuristic's action may be masked, see below)
next_action_masks      (M, A)       bool      available actions at o'
episode_ids            (M,)         int64     the episode's id (in the task-log database)
node_ids               (M,)         int64     the node i
run_ids                (M,)         int64     the run's id in the database
slots                  (M,)         int64     the slot t
action_probs           (M,)         float32   probability the logging scheduler gave a_t^i
                                              (NaN: unknown, e.g. a deterministic rule)
obs_layout             ()           str       observation layout (o2o-obs-v1, -v2 or -v3);
                                              absent: v1
feature_scales         ()           str       layout v3 only: the ``FeatureScales`` its
                                              observations were built with, as JSON
reward_credit          ()           str       how outcomes became rewards (``slot``,
                                              ``decision``, ``node``, ``counterfactual[-w<w>]``;
                                              ``o2o.core.decpomdp``)
=====================  ===========  ========  ================================================

The first nine arrays are what training needs (``REQUIRED``); a user's own ``.npz`` with them
trains as well. Rows where ``action_masks[k, actions[k]]`` is False are real decisions of a
heuristic that sent a task to a node whose overload flag was set (RATC and ESF do not read the
flag); they are kept as they happened.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from o2o.core.decpomdp import (
    OBS_LAYOUT_VERSION,
    CREDIT_NAMES,
    LAYOUT_NAMES,
    FeatureScales,
    is_known_layout,
    is_reward_credit,
    is_v3,
    nodes_of,
    obs_dim,
)
from o2o.core.episodes import sample_episodes
from o2o.core.errors import UserError
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.logs.records import EpisodeLog, episode_logs_from_rollout
from o2o.logs.store import LogStore
from o2o.logs.transitions import rebuild_transitions

# Arrays with one row per node-slot, in the order they are written, with their dtypes.
ROW_DTYPES: dict[str, type] = {
    "observations": np.float32, "actions": np.int64, "rewards": np.float32,
    "next_observations": np.float32, "terminals": np.bool_, "action_masks": np.bool_,
    "next_action_masks": np.bool_, "episode_ids": np.int64, "node_ids": np.int64,
    "run_ids": np.int64, "slots": np.int64, "action_probs": np.float32,
}
REQUIRED = tuple(ROW_DTYPES)[:9]
META = ("obs_layout", "reward_credit", "feature_scales")
ARRAYS = (*ROW_DTYPES, "obs_layout", "reward_credit")  # what every written data set holds
EXPORT_BATCH_EPISODES = 64
ZIP_MAGIC = b"PK\x03\x04"


def dataset_from_logs(scenario: Scenario, network: Network, logs: Sequence[EpisodeLog],
                      reward_credit: str = "slot", episode_ids: Sequence[int] | None = None,
                      run_id: int = 0, obs_layout: str = OBS_LAYOUT_VERSION) -> dict[str, np.ndarray]:
    """The data set of logged episodes of one run (one scenario and network), in memory."""
    tr = rebuild_transitions(scenario, network, logs, reward_credit, obs_layout)
    e, t_slots, n = len(logs), scenario.slots, network.n
    rows = e * t_slots * n
    ids = [log.episode_index for log in logs] if episode_ids is None else list(episode_ids)
    data = {
        "observations": tr.observations.reshape(rows, -1),
        "actions": tr.actions.reshape(rows),
        "rewards": tr.rewards.reshape(rows),
        "next_observations": tr.next_observations.reshape(rows, -1),
        "terminals": np.repeat(tr.terminals.reshape(-1), n),  # per slot: every node gets it
        "action_masks": tr.action_masks.reshape(rows, -1),
        "next_action_masks": tr.next_action_masks.reshape(rows, -1),
        "episode_ids": np.repeat(np.asarray(ids, dtype=np.int64), t_slots * n),
        "node_ids": np.tile(np.arange(n, dtype=np.int64), e * t_slots),
        "run_ids": np.full(rows, run_id, dtype=np.int64),
        "slots": np.tile(np.repeat(np.arange(t_slots, dtype=np.int64), n), e),
        "action_probs": tr.action_probs.reshape(rows),
    }
    return _finish({k: [v] for k, v in data.items()}, n, reward_credit, obs_layout)


def simulated_dataset(scenario: Scenario, network: Network, scheduler, seeds: Sequence[int],
                      reward_credit: str = "slot", batch_size: int = 64,
                      obs_layout: str = OBS_LAYOUT_VERSION) -> dict[str, np.ndarray]:
    """The data set of ``scheduler`` on the episodes ``seeds``, logged in memory (no database):
    the same arrays ``o2o dataset export`` writes after ``o2o collect``, with the episode seeds
    as episode ids."""
    seeds = [int(s) for s in seeds]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ROW_DTYPES}
    for lo in range(0, len(seeds), batch_size):
        chunk = seeds[lo:lo + batch_size]
        logs = episode_logs_from_rollout(scenario, network, sample_episodes(scenario, network, chunk),
                                         scheduler, first_index=lo)
        part = dataset_from_logs(scenario, network, logs, reward_credit, episode_ids=chunk,
                                 obs_layout=obs_layout)
        for name in ROW_DTYPES:
            parts[name].append(part[name])
    return _finish(parts, network.n, reward_credit, obs_layout)


def _finish(parts: dict[str, list[np.ndarray]], n: int, reward_credit: str,
            obs_layout: str = OBS_LAYOUT_VERSION) -> dict[str, np.ndarray]:
    d, a = obs_dim(n, obs_layout), n + 1
    empty = {"observations": (0, d), "next_observations": (0, d), "action_masks": (0, a),
             "next_action_masks": (0, a)}
    data = {name: (np.concatenate(parts[name]) if parts[name] else np.zeros(empty.get(name, (0,))))
            .astype(dtype, copy=False) for name, dtype in ROW_DTYPES.items()}
    data["obs_layout"] = np.array(obs_layout)
    data["reward_credit"] = np.array(reward_credit)
    if is_v3(obs_layout):  # built by rebuild_transitions at the default scales
        data["feature_scales"] = np.array(FeatureScales().model_dump_json())
    return data


def build_dataset(store: LogStore | str | Path, run_ids: Iterable[int] | None = None,
                  reward_credit: str = "slot",
                  progress: Callable[[int], None] | None = None,
                  obs_layout: str = OBS_LAYOUT_VERSION) -> dict[str, np.ndarray]:
    """The data set of the given runs (default: every run in the log). ``store`` is an open
    :class:`LogStore` or what ``--db`` accepts; ``progress(k)`` is called after every k
    episodes read.

    Interrupted runs contribute their finished episodes (an episode is written whole or not at
    all). All runs must have the same number of nodes (the observation size depends on it)."""
    if not is_reward_credit(reward_credit):
        raise UserError(f"--reward-credit must be one of {CREDIT_NAMES}, got {reward_credit!r}")
    if not is_known_layout(obs_layout):
        raise UserError(f"--obs-layout must be one of {LAYOUT_NAMES}, got {obs_layout!r}")
    if not isinstance(store, LogStore):
        with LogStore.open(store) as opened:
            return build_dataset(opened, run_ids, reward_credit, progress, obs_layout)
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
        if not is_known_layout(known[r].obs_layout):
            raise UserError(f"run {r} was logged with observation layout {known[r].obs_layout}; "
                            f"this o2o builds {LAYOUT_NAMES}")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ROW_DTYPES}
    for r in ids:
        scenario, network = known[r].scenario, store.network(r)
        batch: list[tuple[int, EpisodeLog]] = []

        def flush():
            if batch:
                part = dataset_from_logs(scenario, network, [log for _, log in batch], reward_credit,
                                         episode_ids=[i for i, _ in batch], run_id=r,
                                         obs_layout=obs_layout)
                for name in ROW_DTYPES:
                    parts[name].append(part[name])
                if progress is not None:
                    progress(len(batch))
                batch.clear()

        for episode_id, log in store.read_episodes(r):
            batch.append((episode_id, log))
            if len(batch) == EXPORT_BATCH_EPISODES:
                flush()
        flush()
    return _finish(parts, known[ids[0]].nodes, reward_credit, obs_layout)


def save_dataset(dataset: dict[str, np.ndarray], path: str | Path, compress: bool = False) -> Path:
    """Write the data set as ``.npz`` (the suffix is added if it is missing)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    missing = [k for k in ARRAYS if k not in dataset]
    if missing:
        raise ValueError(f"data set lacks arrays {missing}")
    # Written beside and renamed over: a failed write (disk full) leaves no partial archive.
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **dataset)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def read_npz(path: str | Path, what: str, missing: str, again: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file at ``path`` (numpy only, no pickle). A missing file, one
    that is not a zip archive or a damaged one is refused in one line naming ``what`` it should
    be, with ``missing`` (how to make one) or ``again`` (what to redo)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist; {missing}")
    with path.open("rb") as fh:
        if fh.read(4) != ZIP_MAGIC:
            raise UserError(f"{path} is not a {what} (an .npz file is a zip archive of numpy arrays)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is a damaged {what} ({exc}); {again}") from None


def load_dataset(path: str | Path, n: int | None = None) -> dict[str, np.ndarray]:
    """Read a ``.npz`` data set (numpy only, no pickle) and check it (``check_dataset``)."""
    data = read_npz(path, ".npz data set",
                    "export one from task logs with 'o2o dataset export --db ... --out ...'",
                    "export it again")
    try:
        return check_dataset(data, n)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def dataset_obs_layout(data: dict[str, np.ndarray]) -> str:
    """The observation layout of the data set (v1 when it does not say)."""
    return str(np.asarray(data["obs_layout"])) if "obs_layout" in data else OBS_LAYOUT_VERSION


def dataset_feature_scales(data: dict[str, np.ndarray]) -> FeatureScales | None:
    """The scales of a layout-v3 data set's observations (the defaults when it does not say);
    None for layouts v1 and v2."""
    if not is_v3(dataset_obs_layout(data)):
        return None
    if "feature_scales" not in data:
        return FeatureScales()
    try:
        return FeatureScales.model_validate_json(str(np.asarray(data["feature_scales"])))
    except ValueError as exc:
        raise UserError(f"data set array feature_scales is not valid ({str(exc).splitlines()[0]}); "
                        "export the data set again") from None


def dataset_reward_credit(data: dict[str, np.ndarray]) -> str | None:
    """The reward credit the data set was built with; None when it does not say."""
    if "reward_credit" not in data:
        return None
    return str(np.asarray(data["reward_credit"]))


def check_dataset(data: dict[str, np.ndarray], n: int | None = None) -> dict[str, np.ndarray]:
    """The data set with the documented dtypes, or a UserError that says what is wrong.

    Refused: a missing array, a wrong shape or kind of dtype (an action that is not a whole
    number, a mask that is not boolean), NaN or infinite observations or rewards, observations
    outside [0, 1], actions outside 0..N, an empty mask, another observation layout, an unknown
    reward credit, a data set for another number of nodes than ``n``. Arrays other than the
    documented ones are dropped."""
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise UserError(f"not an o2o data set: it lacks {', '.join(missing)} "
                        f"(expected arrays: {', '.join(REQUIRED)})")
    kinds = {np.float32: ("f", "floating-point"), np.int64: ("iu", "integer"), np.bool_: ("b", "boolean")}
    for k, dtype in ROW_DTYPES.items():
        allowed, want = kinds[dtype]
        if k in data and np.asarray(data[k]).dtype.kind not in allowed:
            raise UserError(f"data set array {k} has dtype {np.asarray(data[k]).dtype}; it must be {want}")
    out = {k: np.asarray(data[k]).astype(t, copy=False) for k, t in ROW_DTYPES.items() if k in data}
    for k in META:
        if k in data:
            out[k] = np.asarray(data[k])
    m = out["actions"].shape[0]
    if m == 0:
        raise UserError("data set is empty")
    layout = dataset_obs_layout(out)
    if not is_known_layout(layout):
        raise UserError(f"data set has observation layout {layout!r}; this o2o reads {LAYOUT_NAMES}")
    obs = out["observations"]
    if obs.ndim != 2:
        raise UserError(f"observations must be (M, D), got shape {obs.shape}")
    d = obs.shape[1]
    n_data = nodes_of(d, layout)
    if n_data is None:
        raise UserError(f"observation width {d} does not fit layout {layout} for any N >= 2")
    if n is not None and n_data != n:
        raise UserError(f"data set is for {n_data} nodes (observation width {d}) but the scenario "
                        f"has {n}; pick the scenario the data was logged on")
    shapes = {"observations": (m, d), "next_observations": (m, d), "action_masks": (m, n_data + 1),
              "next_action_masks": (m, n_data + 1)}
    for k in out:
        if k in ROW_DTYPES and out[k].shape != shapes.get(k, (m,)):
            raise UserError(f"data set field {k} has shape {out[k].shape}, expected {shapes.get(k, (m,))}")
    for k in ("observations", "next_observations", "rewards"):
        bad = ~np.isfinite(out[k])
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise UserError(f"data set array {k} holds {int(bad.sum())} NaN or infinite values "
                            f"(first in row {row}); rebuild the data set from its task log")
    for k in ("observations", "next_observations"):
        if out[k].min() < 0.0 or out[k].max() > 1.0:
            raise UserError(f"data set array {k} has values outside [0, 1] (min {out[k].min():.3g}, "
                            f"max {out[k].max():.3g}); observations are scaled into [0, 1]")
    if out["actions"].min() < 0 or out["actions"].max() > n_data:
        raise UserError(f"actions must lie in 0..{n_data}")
    if not out["action_masks"].any(axis=1).all() or not out["next_action_masks"].any(axis=1).all():
        raise UserError("every action mask must allow at least one action")
    if "reward_credit" in out and not is_reward_credit(str(out["reward_credit"])):
        raise UserError(f"data set has reward credit {str(out['reward_credit'])!r}; known: {CREDIT_NAMES}")
    return out
