"""A TorchRL environment over the batched engine, and the BenchMARL task built on it.

``OffloadTorchEnv`` wraps ``OffloadVecEnv`` (the paper's Dec-POMDP, IV-B) as a TorchRL
``EnvBase`` with batch size (B,): one agent group ``agents`` of the N nodes, each with its
observation (3N+6, layout v1) and its action mask (N+1 booleans, BenchMARL's ``action_mask``
convention: True = allowed); the root holds the slot's global ``state`` (4N: every node's
queue l_k and its task's s, c, d, what O2O-DRL's centralized critic reads,
``o2o.core.decpomdp.central_shared``), the team reward of the slot (``slot`` credit, paper IV-B)
and ``done``. One environment step is one slot of the B episodes: every node decides at once.

Actions the vector env refuses are replaced, and counted (``replaced_actions`` of
``node_slots``): a node without a task takes the no-task action N whatever it chose (it has
nothing to place), and a node with a task that chose N keeps the task (executes it itself).
The mask forbids both, so only an algorithm that can sample a masked action reaches this
(BenchMARL's MASAC: its masked logits are -18, not minus infinity).

The B episodes run in lockstep (T slots each) and end together, so a reset always restarts all
of them. Each reset draws the next B episode seeds of its source: a ``SeedRange`` read in order
(training: ``o2o.core.seeds.online(k)``, the episodes O2O-DRL's training seed k sees, in the
same order), or a fixed list of B seeds replayed at every reset (evaluation).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from benchmarl.environments.common import Task, TaskClass
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from o2o.core import seeds as seed_ranges
from o2o.core.decpomdp import central_columns, central_shared
from o2o.core.network import Network, sample_network
from o2o.core.scenario import Scenario, load_scenario
from o2o.core.seeds import SeedRange
from o2o.sim.env import OffloadVecEnv

GROUP = "agents"


class OffloadTorchEnv(EnvBase):
    """TorchRL view of ``OffloadVecEnv(scenario, network)`` with ``num_envs`` episodes in a
    batch; ``episodes`` is a ``SeedRange`` (read in order) or a list of ``num_envs`` seeds."""

    def __init__(self, scenario: Scenario, network: Network, episodes: SeedRange | list[int],
                 num_envs: int, device: str = "cpu"):
        super().__init__(batch_size=torch.Size([num_envs]), device=device)
        if not isinstance(episodes, SeedRange) and len(episodes) != num_envs:
            raise ValueError(f"a fixed list of episodes needs {num_envs} seeds, got {len(episodes)}")
        self.vec = OffloadVecEnv(scenario, network, reward_credit="slot")
        self.scenario, self.network = scenario, network
        self.episodes, self.episodes_used = episodes, 0
        self.replaced_actions, self.node_slots = 0, 0
        self.agent_names = [f"node_{i}" for i in range(network.n)]
        B, N, D = num_envs, network.n, self.vec.obs_dim
        flag = lambda *shape: Categorical(n=2, shape=torch.Size(shape), dtype=torch.bool, device=device)  # noqa: E731
        self.full_observation_spec = Composite(
            {GROUP: Composite(
                observation=Bounded(0.0, 1.0, shape=(B, N, D), dtype=torch.float32, device=device),
                action_mask=flag(B, N, N + 1), shape=(B, N), device=device),
             "state": Bounded(0.0, 1.0, shape=(B, len(central_columns(N)) * N), dtype=torch.float32,
                              device=device)},
            shape=(B,), device=device)
        self.full_action_spec = Composite(
            {GROUP: Composite(action=Categorical(n=N + 1, shape=(B, N), dtype=torch.int64, device=device),
                              shape=(B, N), device=device)},
            shape=(B,), device=device)
        self.full_reward_spec = Composite(
            reward=Unbounded(shape=(B, 1), dtype=torch.float32, device=device), shape=(B,), device=device)
        self.full_done_spec = Composite(done=flag(B, 1), terminated=flag(B, 1), truncated=flag(B, 1),
                                        shape=(B,), device=device)

    def _next_seeds(self) -> list[int]:
        B = int(self.batch_size[0])
        if isinstance(self.episodes, SeedRange):
            chosen = self.episodes.take(B, self.episodes_used)
            self.episodes_used += B
            return chosen
        return list(self.episodes)

    def _observation(self, obs: np.ndarray, mask: np.ndarray) -> TensorDict:
        B = self.batch_size
        return TensorDict({
            GROUP: TensorDict({"observation": torch.from_numpy(obs), "action_mask": torch.from_numpy(mask)},
                              batch_size=(*B, self.network.n)),
            "state": torch.from_numpy(central_shared(obs)),
        }, batch_size=B, device=self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        reset = None if tensordict is None else tensordict.get("_reset", None)
        if reset is not None and self.vec.engine is not None and not self.vec.engine.done:
            if not reset.any():          # nothing to restart: the current observation
                return self._out(*self.vec._observe())
            if not reset.all():
                raise RuntimeError("the episodes run in lockstep: reset all of them or none")
        return self._out(*self.vec.reset(self._next_seeds()))

    def _out(self, obs: np.ndarray, mask: np.ndarray) -> TensorDict:
        td = self._observation(obs, mask)
        false = torch.zeros((*self.batch_size, 1), dtype=torch.bool, device=self.device)
        td.update({"done": false, "terminated": false.clone(), "truncated": false.clone()})
        return td

    def _legal(self, actions: np.ndarray) -> np.ndarray:
        """The actions with the two refused kinds replaced (module docstring), counted."""
        e, n = self.vec.engine, self.network.n
        has = e.ep.has_task[:, e.t, :]
        legal = np.where(has, np.where(actions == n, np.arange(n)[None], actions), n)
        self.replaced_actions += int((legal != actions).sum())
        self.node_slots += int(actions.size)
        return legal

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        actions = self._legal(tensordict.get((GROUP, "action")).cpu().numpy())
        obs, mask, reward, done, _ = self.vec.step(actions)
        td = self._observation(obs, mask)
        ended = torch.from_numpy(done[:, None].copy()).to(self.device)
        td.update({"reward": torch.from_numpy(reward[:, None].astype(np.float32)).to(self.device),
                   "done": ended, "terminated": ended.clone(),
                   "truncated": torch.zeros_like(ended)})
        return td

    def rand_action(self, tensordict: TensorDictBase | None = None) -> TensorDictBase:
        """Each node's action uniformly among those its mask allows (TorchRL's random policy,
        e.g. ``rollout`` without a policy), drawn from torch's generator."""
        if tensordict is None:
            tensordict = TensorDict({}, batch_size=self.batch_size, device=self.device)
        mask = tensordict.get((GROUP, "action_mask"), None)
        if mask is None:
            mask = torch.from_numpy(self.vec._observe()[1])
        action = torch.multinomial(mask.reshape(-1, mask.shape[-1]).float(), 1).reshape(mask.shape[:-1])
        tensordict.set((GROUP, "action"), action.to(self.device))
        return tensordict

    def _set_seed(self, seed: Optional[int]) -> None:
        # Episodes come from their seeds (``episodes``); the env itself draws nothing.
        return None

    def success_rates(self) -> np.ndarray:
        """(B,) per-episode success rates of the finished episodes (as ``o2o run`` reports)."""
        if self.vec.engine is None or not self.vec.engine.done:
            raise RuntimeError("the episodes are not finished")
        return self.vec.engine.metrics()["success_rate"]


def task_config(scenario: str, overrides: list[str], network_seed: int) -> dict:
    return {"scenario": scenario, "overrides": list(overrides), "network_seed": int(network_seed)}


def scenario_and_network(config: dict) -> tuple[Scenario, Network]:
    scenario = load_scenario(config["scenario"], list(config["overrides"]))
    return scenario, sample_network(scenario, int(config["network_seed"]))


class OffloadTaskClass(TaskClass):
    """BenchMARL task: task offloading on one o2o scenario and network (``task_config``). The
    training env of BenchMARL's seed k reads the episodes of ``o2o.core.seeds.online(k)``."""

    def get_env_fun(self, num_envs: int, continuous_actions: bool, seed: Optional[int],
                    device) -> Callable[[], EnvBase]:
        scenario, network = scenario_and_network(self.config)
        episodes = seed_ranges.online(seed or 0)
        made = self.__dict__.setdefault("envs", [])  # every env made, to read its counters

        def make() -> OffloadTorchEnv:
            made.append(OffloadTorchEnv(scenario, network, episodes, num_envs, device=str(device)))
            return made[-1]

        return make

    def supports_continuous_actions(self) -> bool:
        return False

    def supports_discrete_actions(self) -> bool:
        return True

    def max_steps(self, env: EnvBase) -> int:
        return env.scenario.slots

    def has_render(self, env: EnvBase) -> bool:
        return False

    def group_map(self, env: EnvBase) -> Dict[str, List[str]]:
        return {GROUP: list(env.agent_names)}

    def _observation_entries(self, env: EnvBase, keep: str) -> Composite:
        spec = env.full_observation_spec_unbatched.clone()
        for key in list(spec[GROUP].keys()):
            if key != keep:
                del spec[(GROUP, key)]
        del spec["state"]
        return spec

    def observation_spec(self, env: EnvBase) -> Composite:
        return self._observation_entries(env, "observation")

    def action_mask_spec(self, env: EnvBase) -> Optional[Composite]:
        return self._observation_entries(env, "action_mask")

    def state_spec(self, env: EnvBase) -> Optional[Composite]:
        return Composite({"state": env.full_observation_spec_unbatched["state"].clone()})

    def info_spec(self, env: EnvBase) -> Optional[Composite]:
        return None

    def action_spec(self, env: EnvBase) -> Composite:
        return env.full_action_spec_unbatched

    @staticmethod
    def env_name() -> str:
        return "o2o"


class OffloadTask(Task):
    """BenchMARL's enum of this environment's tasks (one: ``OFFLOAD``); build it with
    ``OffloadTask.OFFLOAD.get_task(task_config(...))``."""

    OFFLOAD = None

    @staticmethod
    def associated_class():
        return OffloadTaskClass
