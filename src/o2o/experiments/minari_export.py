"""A suite data set as a Minari data set (optional extra ``datasets``): the per-node
single-agent view in Farama's standard offline-RL format.

Each (episode, node) of the data set is one Minari episode of T steps: ``observations`` (T + 1, D)
are o_0^i .. o_T^i (the last one after the last slot), ``actions`` (T,) a_t^i in Discrete(N + 1)
(N = no task), ``rewards`` (T,) r_t^i under the suite's reward credit, ``terminations`` True at
the last step, ``truncations`` False, and ``infos["action_mask"]`` (T + 1, N + 1) the available
actions at each observation (Minari has no mask of its own; infos is where per-step extras go).
The episode's ``seed`` is its episode seed and ``options`` names the node. The observation space
is Box(0, 1, (D,), float32).

Minari's own normalised score works on episode returns, which here are one node's sum of
outcomes, not the suite's score (the success rate of all nodes): the reference scores stay in
the suite's manifest, and the Minari data set's description says so.
"""

from __future__ import annotations

import warnings

import numpy as np

from o2o.core.errors import UserError


def minari_module():
    try:
        import minari
    except ImportError:
        raise UserError("minari is not installed; install the extra: pip install -e '.[datasets]'") from None
    return minari


def node_episodes(stored: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """One dict of Minari episode arrays per (episode, node), in the order (episode, node), from
    a suite file's arrays (``o2o.logs.suite_format``)."""
    e, n, d = stored["final_observations"].shape
    slots = stored["actions"].shape[0] // (e * n)
    shape = lambda key: stored[key].reshape(e, slots, n, *stored[key].shape[1:])  # noqa: E731
    obs, masks = shape("observations"), shape("action_masks")
    actions, rewards = shape("actions"), shape("rewards")
    episodes = []
    for k in range(e):
        for i in range(n):
            terminations = np.zeros(slots, dtype=bool)
            terminations[-1] = True
            episodes.append({
                "observations": np.concatenate([obs[k, :, i], stored["final_observations"][k, i][None]]),
                "actions": actions[k, :, i].copy(), "rewards": rewards[k, :, i].copy(),
                "terminations": terminations, "truncations": np.zeros(slots, dtype=bool),
                "action_mask": np.concatenate([masks[k, :, i], stored["final_action_masks"][k, i][None]]),
                "seed": int(stored["episode_ids"][k * slots * n]), "node": i})
    return episodes


def export_minari(stored: dict[str, np.ndarray], dataset_id: str, description: str = ""):
    """Write the suite file's arrays as the Minari data set ``dataset_id`` (in Minari's data
    folder, ``MINARI_DATASETS_PATH``); returns the ``MinariDataset``."""
    minari = minari_module()
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer

    e, n, d = stored["final_observations"].shape
    buffers = [EpisodeBuffer(id=k, seed=ep["seed"], options={"node": ep["node"]},
                             observations=ep["observations"], actions=ep["actions"],
                             rewards=ep["rewards"], terminations=ep["terminations"],
                             truncations=ep["truncations"], infos={"action_mask": ep["action_mask"]})
               for k, ep in enumerate(node_episodes(stored))]
    try:
        with warnings.catch_warnings():  # Minari warns of every optional field left empty
            warnings.simplefilter("ignore", UserWarning)
            return minari.create_dataset_from_buffers(
                dataset_id, buffers, observation_space=spaces.Box(0.0, 1.0, (d,), np.float32),
                action_space=spaces.Discrete(n + 1), algorithm_name=",".join(
                    sorted(set(stored["episode_behaviours"].tolist()))),
                author="o2o", description=description, data_format="hdf5")
    except ValueError as exc:  # an existing id, or one Minari cannot parse
        raise UserError(f"cannot create Minari data set {dataset_id!r}: {exc}") from None
