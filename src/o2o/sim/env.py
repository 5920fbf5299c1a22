"""Environments over the simulator for training: a batched vector env and a PettingZoo adapter.

Reset contract of ``OffloadVecEnv`` (written down, as Gymnasium's vector envs do):

* ``reset(seeds)`` starts one episode per seed (B = len(seeds)) on the env's fixed network and
  returns the first observations (B, N, 3N+6) and masks (B, N, N+1).
* The B episodes run in lockstep: every one has T steps, and ``done`` is True for all of them at
  the step of slot T-1, whose reward includes every outcome of the drain (paper IV-B).
* There is no autoreset: ``step`` after the terminal step raises; call ``reset`` again. The
  observation returned by the terminal step is that of the boundary after slot T-1 (no tasks);
  it is never bootstrapped from.
* ``reward_credit="slot"`` (default) credits each outcome to the slot in which it ended, and
  rewards are final when returned. ``reward_credit="decision"`` credits it to the slot of the
  task's decision; those rewards are only known once the episode is drained, so ``step``
  returns 0 and the terminal ``info["episode_rewards"]`` holds all T rewards (B, T) for the
  learner to use. ``info["episode_rewards"]`` is given under both credits, and
  ``info["node_rewards"]`` (B, T, N), each node's own outcome at its decision slot (the ``node``
  credit; ``step`` returns 0 under it too). Under ``counterfactual`` (``counterfactual-w<w>``)
  ``info["harm"]`` (B, T, N) is the harm each decision imposed on the other tasks and
  ``info["credit_rewards"]`` the node rewards minus w times it (``o2o.sim.harm``).
* ``obs_layout``: ``o2o-obs-v1`` (the paper's observation, 3N+6) or ``o2o-obs-v2`` (plus what a
  node probes at its decision: every node's execution backlog and flag, its own send backlogs;
  10N+6) or ``o2o-obs-v3`` (the same probes in fixed physical scales, ``feature_scales``, and
  no one-hot; 7+10N) or ``o2o-obs-v3-k<k>`` (v3 where each node probes only k peers, drawn from
  its scheduler uniforms; 7+11N), built by the same ``Observer`` the ``drl`` rule and the log
  rebuild use.
* Actions (B, N): a node with a task must choose 0..N-1 (masked choices are allowed, as a
  heuristic may make them); a node without a task must choose N.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from o2o.core.decpomdp import (
    OBS_LAYOUT_VERSION,
    FeatureScales,
    Observer,
    central_columns,
    central_shared,
    check_reward_credit,
    harm_weight,
    node_rewards,
    obs_dim,
)
from o2o.core.episodes import sample_episodes
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.sim.engine import Engine


class OffloadVecEnv:
    def __init__(self, scenario: Scenario, network: Network, reward_credit: str = "slot",
                 obs_layout: str = OBS_LAYOUT_VERSION, feature_scales: FeatureScales | None = None):
        check_reward_credit(reward_credit)
        self.scenario = scenario
        self.network = network
        self.reward_credit = reward_credit
        self.observer = Observer(scenario, network, obs_layout, feature_scales)
        self.n = network.n
        self.obs_dim = obs_dim(self.n, obs_layout)
        self.n_actions = self.n + 1
        self.engine: Engine | None = None
        self._nodes: dict[int, np.ndarray] = {}
        from o2o.sim.kernel import (
            check_actions,  # compiled loops (numba), loaded on first use
        )

        self._check_actions = check_actions

    def reset(self, seeds) -> tuple[np.ndarray, np.ndarray]:
        episodes = sample_episodes(self.scenario, self.network, seeds)
        self.engine = Engine(self.scenario, self.network, episodes)
        return self._observe()

    def _observe(self) -> tuple[np.ndarray, np.ndarray]:
        e = self.engine
        state = e.node_state()
        B, N = e.B, e.N
        t = min(e.t, e.T - 1)
        has = e.ep.has_task[:, e.t, :] if e.t < e.T else np.zeros((B, N), dtype=bool)
        if self.observer.obs_layout == OBS_LAYOUT_VERSION:  # one compiled call for all nodes
            return self.observer.observe_episodes(
                state.exec_len, state.in_flight, state.overloaded, has, e.ep.size_bytes[:, t],
                e.ep.cycles[:, t], e.ep.deadline_s[:, t])
        node = self._nodes.get(B)
        if node is None:
            node = self._nodes[B] = np.tile(np.arange(N), B)
        overloaded = state.overloaded.repeat(N, axis=0)  # (B*N, N): every peer's flag
        # Layouts v2 and v3: every node sees every node's answer.
        # Layout v3-k: each node's probed peers come from its scheduler uniforms.
        probed = (np.repeat(state.exec_backlog_s, N, axis=0), state.send_backlog_s.reshape(B * N, N), overloaded)
        u = e.ep.sched_u[:, t].reshape(B * N, -1)
        obs = self.observer.observe(
            node, state.exec_len.reshape(-1), state.in_flight.reshape(B * N, N), has.reshape(-1),
            e.ep.size_bytes[:, t].reshape(-1), e.ep.cycles[:, t].reshape(-1),
            e.ep.deadline_s[:, t].reshape(-1), probed, u)
        mask = self.observer.mask(node, has.reshape(-1), overloaded, u)
        return obs.reshape(B, N, -1), mask.reshape(B, N, -1)

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        e = self.engine
        if e is None:
            raise RuntimeError("call reset(seeds) before step()")
        if e.done:
            raise RuntimeError("the episodes are over (no autoreset); call reset(seeds)")
        actions = np.ascontiguousarray(actions, dtype=np.int64)
        if actions.shape != (e.B, e.N):
            raise ValueError(f"actions must have shape {(e.B, e.N)}, got {actions.shape}")
        bad = e._check_actions(e.ep.has_task[:, e.t, :], actions, e.N, True)
        if bad == 1:
            raise ValueError(f"a node with a task must choose a destination in 0..{e.N - 1}")
        if bad == 2:
            raise ValueError(f"a node without a task must take the no-task action {e.N}")
        t = e.t
        slot_reward = e._settle(actions)  # checked above (the engine's checks and more)
        obs, mask = self._observe()
        done = np.full(e.B, e.done)
        info: dict[str, Any] = {"slot": t}
        if self.reward_credit == "slot":
            reward = slot_reward
        else:
            reward = np.zeros(e.B)
        if e.done:
            info["episode_rewards"] = (e.reward if self.reward_credit == "slot" else e.reward_by_decision).copy()
            info["node_rewards"] = node_rewards(e.ep.has_task, e.outcome)
            weight = harm_weight(self.reward_credit)
            if weight is not None:
                from o2o.sim.harm import counterfactual_rewards, engine_harm

                info["harm"] = engine_harm(e)
                info["credit_rewards"] = counterfactual_rewards(info["node_rewards"], info["harm"], weight)
            info["metrics"] = e.metrics()
        return obs, mask, reward.astype(np.float32), done, info


class OffloadParallelEnv:
    """PettingZoo ``ParallelEnv`` adapter: one episode, agents ``node_0`` .. ``node_{N-1}``,
    observation ``{"observation": Box(0, 1, (3N+6,)), "action_mask": (N+1,) int8}``, every agent
    gets the team reward. ``reset(seed=s)`` runs the episode with episode seed ``s``.

    ``state()`` is the slot's global state, ``state_space`` Box(0, 1, (4N,)): every node's
    execution queue l_k and its task's s, c, d (``o2o.core.decpomdp.central_shared``), the part
    the centralized critic of online training adds to a node's own observation (centralized
    training, decentralized execution). After the terminal step it is the state at the boundary
    after the last slot."""

    metadata = {"name": "o2o_offload_v0", "render_modes": []}

    def __init__(self, scenario: Scenario, network: Network, reward_credit: str = "slot"):
        from gymnasium import spaces

        self._env = OffloadVecEnv(scenario, network, reward_credit)
        n = network.n
        self.possible_agents = [f"node_{i}" for i in range(n)]
        self.agents: list[str] = []
        self.render_mode = None
        self._obs_space = spaces.Dict({
            "observation": spaces.Box(0.0, 1.0, (self._env.obs_dim,), dtype=np.float32),
            "action_mask": spaces.Box(0, 1, (n + 1,), dtype=np.int8),
        })
        self._act_space = spaces.Discrete(n + 1)
        self.state_space = spaces.Box(0.0, 1.0, (len(central_columns(n)) * n,), dtype=np.float32)
        self._next_seed = 0
        self._obs: np.ndarray | None = None  # (N, D): the nodes' observations of the current slot

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def _pack(self, obs, mask):
        self._obs = obs[0]
        return {a: {"observation": obs[0, k], "action_mask": mask[0, k].astype(np.int8)}
                for k, a in enumerate(self.possible_agents)}

    def reset(self, seed=None, options=None):
        if seed is None:
            seed, self._next_seed = self._next_seed, self._next_seed + 1
        obs, mask = self._env.reset([int(seed)])
        self.agents = list(self.possible_agents)
        return self._pack(obs, mask), {a: {} for a in self.agents}

    def step(self, actions):
        n = self._env.n
        act = np.array([[int(actions.get(a, n)) for a in self.possible_agents]])
        obs, mask, reward, done, info = self._env.step(act)
        packed = self._pack(obs, mask)
        rewards = {a: float(reward[0]) for a in self.agents}
        terms = {a: bool(done[0]) for a in self.agents}
        truncs = {a: False for a in self.agents}
        infos = {a: {} for a in self.agents}
        observations = {a: packed[a] for a in self.agents}
        if done[0]:
            self.agents = []
        return observations, rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        """(4N,) float32: the global state of the current slot (see the class docstring)."""
        if self._obs is None:
            raise RuntimeError("call reset() before state()")
        return central_shared(self._obs)

    def render(self):
        return None

    def close(self):
        pass

    @property
    def unwrapped(self):
        return self
