"""Learning from task logs (paper VI-A, "DRL Layer"; VI-B): logs -> transitions -> training ->
the model store. This is what the testbed's trainer runs, on the testbed's own task log.

It reads only the task log (transitions are rebuilt from the logs alone):

* **offline training** (Algorithm 1): the data set of the given runs (``o2o.logs.dataset``),
  discrete SAC + CQL + V (``o2o.learn.offline``), the actor and critic published as a new
  version of the model store;
* **online fine-tuning** (Algorithm 2): the episodes the nodes just ran with the current model
  are rebuilt into one PPO batch D_k (observations, masks, actions, team rewards; the behaviour
  log-probabilities are the ones the nodes' actors reported, recomputed only where the log lacks
  them; values from the current critic), one PPO update (``PPOUpdate``: GAE, clipped
  objective, critic MSE, K epochs) with the model's reward credit, and the updated model
  published.

Publishing returns the version and its checksum; the controller announces them and the nodes
load the version (verified) before their next episode (``o2o.testbed.controller.notify_controller``
tells a controller that runs in another process or pod).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from o2o.core.decpomdp import OBS_LAYOUT_VERSION
from o2o.core.errors import UserError
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.learn.offline import train_offline
from o2o.learn.online import PPOUpdate, critic_inputs
from o2o.learn.policy import Policy
from o2o.learn.settings import OfflineSettings, OnlineSettings
from o2o.logs.dataset import build_dataset
from o2o.logs.records import EpisodeLog
from o2o.logs.transitions import rebuild_transitions
from o2o.models import ModelStore, check_scenario_fits, hull_ranges, scenario_ranges


@dataclass
class Published:
    store: str
    version: int
    sha256: str
    stats: dict


def runs_scenario(store, run_ids: Sequence[int]) -> tuple[Scenario, Network]:
    """The scenario and network shared by ``run_ids`` (they must agree)."""
    if not run_ids:
        raise UserError("give at least one run (--run ID) to train on")
    known = {info.id: info for info in store.runs()}
    missing = [r for r in run_ids if r not in known]
    if missing:
        raise UserError(f"no run {missing} in the task log (runs: {sorted(known) or 'none'})")
    first = known[run_ids[0]]
    scenario, network = first.scenario, store.network(first.id)
    for r in run_ids[1:]:
        other = store.network(r)
        if known[r].config != first.config or not all(
                np.array_equal(getattr(other, f), getattr(network, f)) for f in network.__dataclass_fields__):
            raise UserError(f"runs {run_ids[0]} and {r} were logged on different scenarios or networks")
    return scenario, network


def read_logs(store, run_ids: Sequence[int]) -> list[EpisodeLog]:
    return [log for r in run_ids for _, log in store.read_episodes(r)]


def publish(model_store: str, policy: Policy, training: dict, **where) -> Published:
    """``where``: the ``nodes_range`` and ``trained_ranges`` of the published model."""
    version, sha256 = policy.publish(model_store, training=training, **where)
    return Published(model_store, version, sha256, training)


def train_offline_from_logs(store, run_ids: Sequence[int], model_store: str, *, steps: int,
                            seed: int = 0, settings: OfflineSettings | None = None,
                            reward_credit: str = "slot", show_progress: bool = False,
                            obs_layout: str = OBS_LAYOUT_VERSION) -> Published:
    """Algorithm 1 on the transitions of ``run_ids`` (rewards credited by ``reward_credit``);
    publishes the policy."""
    scenario, _ = runs_scenario(store, run_ids)
    settings = settings or OfflineSettings()
    data = build_dataset(store, run_ids, reward_credit, obs_layout=obs_layout)
    result = train_offline(data, settings, seed=seed, steps=steps, show_progress=show_progress)
    last = result.history[-1] if result.history else {}
    training = {"phase": "offline", "source": "testbed", "runs": list(run_ids), "steps": steps,
                "seed": seed, "rows": int(data["actions"].shape[0]),
                "final": {k: float(v) for k, v in last.items() if isinstance(v, (int, float))}}
    return publish(model_store, result.policy, training, trained_ranges=scenario_ranges(scenario))


def ppo_batch_from_logs(scenario: Scenario, network: Network, logs: list[EpisodeLog], actor, critic,
                        reward_credit: str, critic_input: str = "own") -> dict[str, np.ndarray]:
    """One PPO batch D_k (the layout ``PPOUpdate.update`` takes: (T, B, N, ...)) from logs."""
    tr = rebuild_transitions(scenario, network, logs, reward_credit, actor.obs_layout, actor.feature_scales)
    E, T, N, D = tr.observations.shape
    obs = tr.observations.transpose(1, 0, 2, 3)
    mask = tr.action_masks.transpose(1, 0, 2, 3)
    act = tr.actions.transpose(1, 0, 2)
    logged = tr.action_probs.transpose(1, 0, 2)
    with torch.no_grad():
        o = torch.from_numpy(np.ascontiguousarray(obs).reshape(-1, D))
        m = torch.from_numpy(np.ascontiguousarray(mask).reshape(-1, N + 1))
        log_pi = actor.log_probs(o, m)
        ours = log_pi.gather(1, torch.from_numpy(act.reshape(-1))[:, None]).squeeze(1).numpy()
        c_in = critic_inputs(np.ascontiguousarray(obs), critic_input).reshape(T * E * N, -1)
        value = critic(torch.from_numpy(np.ascontiguousarray(c_in))).numpy().reshape(T, E, N)
    ours = ours.reshape(T, E, N)
    has = act != N
    # The behaviour policy is what the nodes ran: their reported probabilities where known;
    # rows without a task have one available action (probability 1).
    logp = np.where(has, np.where(np.isfinite(logged) & (logged > 0), np.log(np.maximum(logged, 1e-30)), ours), 0.0)
    return {"obs": np.ascontiguousarray(obs), "mask": np.ascontiguousarray(mask),
            "act": np.ascontiguousarray(act), "logp": logp.astype(np.float32),
            "value": value.astype(np.float32), "rewards": tr.rewards.transpose(1, 0, 2).astype(np.float64)}


def finetune_from_logs(store, run_ids: Sequence[int], model_store: str, *, seed: int = 0,
                       settings: OnlineSettings | None = None, version: int | None = None) -> Published:
    """One Algorithm 2 update on the episodes of ``run_ids`` (run with the store's model
    ``version``, default the latest), with the model's reward credit; publishes the updated
    policy."""
    scenario, network = runs_scenario(store, run_ids)
    settings = settings or OnlineSettings()
    model = ModelStore(model_store).load(version, nodes=network.n, need_critic=True)
    check_scenario_fits(model, scenario)
    policy = Policy.from_model(model, network.n)  # a pooled-critic v3 model: any N of its range
    logs = read_logs(store, run_ids)
    if not logs:
        raise UserError(f"runs {list(run_ids)} have no finished episodes to fine-tune on")
    credit = policy.reward_credit or "slot"
    buf = ppo_batch_from_logs(scenario, network, logs, policy.actor, policy.critic, credit,
                              policy.critic_input)
    torch.manual_seed(seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x0A11]))
    update = PPOUpdate(settings.model_copy(update={"hidden": model.hidden}), policy.actor,
                       policy.critic, rng, policy.reward_stats, policy.critic_input)
    stats = update.update(buf)
    training = {"phase": "online", "source": "testbed", "runs": list(run_ids),
                "from_version": model.version, "episodes": len(logs), "seed": seed,
                "update": {k: float(v) for k, v in stats.items()}}
    return publish(model_store, Policy(policy.actor, policy.critic, credit, policy.reward_stats),
                   training, nodes_range=model.nodes_range,
                   trained_ranges=hull_ranges(model.trained_ranges, scenario_ranges(scenario)))
