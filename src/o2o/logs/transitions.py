"""RL transitions rebuilt from task logs alone (paper IV-B, VI-A).

For every episode, node i and slot t the transition is

    (o_t^i, mask_t^i, a_t^i, r_t, o_{t+1}^i, mask_{t+1}^i, done_t)

* ``o`` and ``mask`` come from :class:`o2o.core.decpomdp.Observer` (the one definition of the
  observation and the mask) fed with what the log says node i saw at boundary t: its execution
  queue length, its receiving queues, the task it had, and the overload flags of its peers.
  ``o_{t+1}`` of the last slot is the boundary after slot T-1 (no task; only action N allowed);
  it is never bootstrapped from because ``done`` is True there.
* The mask is the **true** mask at the decision, even where the logged action is masked: a
  heuristic may choose a node that is overloaded (RATC does not read the flag), and the log keeps
  what happened. A learner that needs ``mask[a]`` to hold must filter or handle those rows
  (``action_masks[k, actions[k]]`` tells which).
* ``r_t`` is the team reward, the same for every node (paper IV-B3): the sum of +1 (SUCCESS)
  and -1 (DROP, EXECUTION_FAILURE, TRANSMISSION_FAILURE) over tasks, credited either to the slot
  in which the outcome ended (``slot``, default; outcomes after slot T-1 count in T-1) or to the
  slot of the task's decision (``decision``); or, with the ``node`` credit, r_t^i = node i's
  own task outcome at its decision slot; with ``counterfactual`` (``-w<w>``) that outcome minus
  w times the harm the decision imposed on the other tasks (``o2o.sim.harm``: the log's actions
  replayed through the simulator on the tasks of its ``episode_seed``; a log the simulator does
  not reproduce, a testbed run, is refused). Not normalised.
* With ``obs_layout="o2o-obs-v2"`` (or ``o2o-obs-v3``, at the default ``FeatureScales``) the
  observations also hold what each node probed (the logged ``peer_backlog_s`` and
  ``send_backlog_s``); a log without them is refused. With ``o2o-obs-v3-k<k>`` only the
  backlogs of the k peers each node probed are read (a testbed log holds no others); which
  peers they were is drawn again from the episode's scheduler uniforms (``episode_seed``).
* ``done_t`` is True at t = T-1 only.

For a simulated run these equal, exactly, the transitions ``OffloadVecEnv`` produces when it is
stepped with the same scheduler's actions (tested in ``tests/test_logs_transitions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from o2o.core.decpomdp import (
    OBS_LAYOUT_VERSION,
    FeatureScales,
    Observer,
    check_reward_credit,
    harm_weight,
    is_probed,
    node_rewards,
    obs_dim,
    rewards,
)
from o2o.core.episodes import sample_episodes
from o2o.core.errors import UserError
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.logs.records import EpisodeLog


@dataclass
class Transitions:
    """Transitions of E episodes, arrays (E, T, N, ...); D = 3N + 6, A = N + 1."""

    observations: np.ndarray       # (E, T, N, D) float32
    action_masks: np.ndarray       # (E, T, N, A) bool
    actions: np.ndarray            # (E, T, N) int64, N = no task
    action_probs: np.ndarray       # (E, T, N) float64, NaN unknown
    rewards: np.ndarray            # (E, T, N) float32 reward of each node, not normalised
    next_observations: np.ndarray  # (E, T, N, D) float32
    next_action_masks: np.ndarray  # (E, T, N, A) bool
    terminals: np.ndarray          # (E, T) bool, True at t = T-1

    @property
    def episodes(self) -> int:
        return int(self.actions.shape[0])


def _probed_known(log: EpisodeLog, known: np.ndarray) -> bool:
    """Whether the log holds every backlog the observation reads: ``known`` is (T+1, N) (every
    peer of a node-slot with a task) or (T+1, N, N) (layout v3-k: its probed peers)."""
    if known.ndim == 2:
        return log.has_probed_backlogs
    known = known[:-1]
    return bool(np.isfinite(log.peer_backlog_s[known]).all() and np.isfinite(log.send_backlog_s[known]).all())


def boundary_observations(observer: Observer, log: EpisodeLog) -> tuple[np.ndarray, np.ndarray]:
    """Observations (T+1, N, D) and masks (T+1, N, A) at the boundaries 0..T of one episode:
    boundary t < T as each node saw it at its decision, boundary T from the ``final_*`` fields
    (no task there)."""
    t_slots, n = log.slots, log.nodes
    has = np.concatenate([np.asarray(log.has_task, dtype=bool), np.zeros((1, n), dtype=bool)])

    def task_feature(values):
        values = np.concatenate([np.asarray(values, dtype=np.float64), np.zeros((1, n))])
        return np.where(has, values, 0.0)  # unspecified (NaN) where there is no task

    exec_len = np.concatenate([log.exec_len, log.final_exec_len[None]])
    recv_len = np.concatenate([log.recv_len, log.final_recv_len[None]])
    flags = np.concatenate([log.peer_overloaded, log.final_peer_overloaded[None]])
    node = np.tile(np.arange(n), t_slots + 1)
    m = (t_slots + 1) * n
    probed = u = None
    if observer.probes is not None:
        # Layout v3-k: the probed peers, from the episode's scheduler uniforms (its seed).
        sched_u = sample_episodes(observer.scenario, observer.network, [log.episode_seed]).sched_u[0]
        u = np.concatenate([sched_u, np.zeros((1, *sched_u.shape[1:]))]).reshape(m, -1)
    if is_probed(observer.obs_layout):
        known = has if u is None else has[..., None] & observer.known(node, has.reshape(m), u).reshape(has.shape + (n,))
        if not _probed_known(log, known):
            raise UserError(f"episode {log.episode_index} was logged without the probed backlogs "
                            f"that observation {observer.obs_layout} needs; export it with "
                            f"--obs-layout {OBS_LAYOUT_VERSION}")
        unknown = np.full((1, n, n), np.nan)  # after the last slot: no task, no probe
        backlog = np.concatenate([log.peer_backlog_s, unknown])
        send = np.concatenate([log.send_backlog_s, unknown])
        probed = (backlog.reshape(m, n), send.reshape(m, n), flags.reshape(m, n))
    obs = observer.observe(node, exec_len.reshape(m), recv_len.reshape(m, n), has.reshape(m),
                           task_feature(log.size_bytes).reshape(m),
                           task_feature(log.cycles).reshape(m),
                           task_feature(log.deadline_s).reshape(m), probed, u)
    mask = observer.mask(node, has.reshape(m), flags.reshape(m, n), u)
    return obs.reshape(t_slots + 1, n, -1), mask.reshape(t_slots + 1, n, -1)


def rebuild_transitions(scenario: Scenario, network: Network, logs: Sequence[EpisodeLog],
                        reward_credit: str = "slot",
                        obs_layout: str = OBS_LAYOUT_VERSION,
                        feature_scales: FeatureScales | None = None) -> Transitions:
    """Transitions of the logged episodes of one run (one scenario and network); layout v3 at
    ``feature_scales`` (None: the defaults)."""
    check_reward_credit(reward_credit)
    observer = Observer(scenario, network, obs_layout, feature_scales)
    e, t_slots, n = len(logs), scenario.slots, network.n
    d, a = obs_dim(n, obs_layout), n + 1
    out = Transitions(
        observations=np.empty((e, t_slots, n, d), dtype=np.float32),
        action_masks=np.empty((e, t_slots, n, a), dtype=bool),
        actions=np.empty((e, t_slots, n), dtype=np.int64),
        action_probs=np.empty((e, t_slots, n), dtype=np.float64),
        rewards=np.empty((e, t_slots, n), dtype=np.float32),
        next_observations=np.empty((e, t_slots, n, d), dtype=np.float32),
        next_action_masks=np.empty((e, t_slots, n, a), dtype=bool),
        terminals=np.zeros((e, t_slots), dtype=bool),
    )
    out.terminals[:, -1] = True
    for k, log in enumerate(logs):
        if log.has_task.shape != (t_slots, n):
            raise ValueError(f"episode {log.episode_index} has shape {log.has_task.shape}, "
                             f"the scenario has T = {t_slots}, N = {n}")
        obs, mask = boundary_observations(observer, log)
        out.observations[k], out.next_observations[k] = obs[:-1], obs[1:]
        out.action_masks[k], out.next_action_masks[k] = mask[:-1], mask[1:]
        out.actions[k] = log.action
        out.action_probs[k] = np.where(log.has_task, log.action_prob, np.nan)
        weight = harm_weight(reward_credit)
        if weight is None:
            out.rewards[k] = rewards(log.has_task, log.outcome, log.end_s, scenario.slot_s, reward_credit)
        else:  # own outcome - w * harm to the others, from the log's actions replayed
            from o2o.sim.harm import counterfactual_rewards, log_harm

            out.rewards[k] = counterfactual_rewards(node_rewards(log.has_task, log.outcome),
                                                    log_harm(scenario, network, log), weight)
    return out
