"""d3rlpy on the reference suite (optional extra ``datasets``): a loader into d3rlpy's
``MDPDataset``, its discrete algorithms (DiscreteCQL, DiscreteBCQ, DiscreteBC) built and fitted,
and a trained algorithm run as an o2o scheduler in the simulator.

The per-node single-agent view: every (episode, node) of a data set is one d3rlpy episode of T
steps (o_t^i, a_t^i, r_t^i), rows in the order (episode, node, slot); the last step is terminal,
as in the project's layout (no bootstrap after the last slot; ``o2o.logs.transitions``).
Actions are discrete, 0..N-1 a destination and N no task, so ``action_size`` = N + 1.

Masks. d3rlpy has no action masks: it trains on the logged actions, which are available (a
no-task row allows only action N) except for the few real decisions of RATC to a node whose
overload flag was set (``o2o.logs.dataset``). At evaluation the policy must not choose an
unavailable action, as the deployed actor cannot (paper IV-B2): ``masked_greedy`` takes the
algorithm's greedy choice among the available actions only: the argmax over the mask of

* DiscreteCQL: the Q-values;
* DiscreteBC: the imitator's logits;
* DiscreteBCQ: the Q-values of the actions whose imitation probability, renormalised over the
  available actions, is at least ``action_flexibility`` times the largest (BCQ's own rule with
  the mask applied first).

With every action available this is exactly d3rlpy's ``predict`` (tested). The private members
read here are those of d3rlpy 2.8.1, the version the extra pins.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from typing import Any

import numpy as np

from o2o.core.decpomdp import LAYOUT_NAMES, OBS_LAYOUT_V2, Observer, is_known_layout, obs_dim
from o2o.core.errors import UserError
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.schedulers.drl import DRLRule
from o2o.sim.rollout import simulate

ALGORITHMS = ("discrete_cql", "discrete_bcq", "discrete_bc")
# d3rlpy's defaults, except the hard target update of the two Q-learners: its default (every
# 8000 steps, tuned for Atari) would never update the target within the bench's few thousand
# steps, so it is every 100 steps here.
TARGET_UPDATE_INTERVAL = 100


def d3rlpy_module():
    """d3rlpy, or a UserError that says how to install it. Its info-level log lines (one
    block per fit) are silenced, and so is the notice the old ``gym`` package (which d3rlpy
    imports for compatibility, unused here) prints on import."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            import d3rlpy
        import structlog
    except ImportError:
        raise UserError("d3rlpy is not installed; install the extra: pip install -e '.[datasets]'") from None
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return d3rlpy


def trajectory_order(data: dict[str, np.ndarray]) -> np.ndarray:
    """Row indices that put a data set (rows in the order (episode, slot, node)) in the order
    (episode, node, slot): one trajectory per node-episode."""
    return np.lexsort((data["slots"], data["node_ids"], data["episode_ids"]))


def obs_width(data: dict[str, np.ndarray], obs_layout: str | None) -> int:
    """Columns of the data set's observations to use: all, or the first 3N + 6 (layout v1 is
    the start of v2)."""
    width = data["observations"].shape[1]
    if obs_layout is None or obs_layout == str(data["obs_layout"]):
        return width
    if not is_known_layout(obs_layout):
        raise UserError(f"observation layout must be one of {LAYOUT_NAMES}, got {obs_layout!r}")
    if str(data["obs_layout"]) != OBS_LAYOUT_V2:
        raise UserError(f"a {data['obs_layout']} data set has no {obs_layout} view")
    return obs_dim(data["action_masks"].shape[1] - 1, obs_layout)


def trajectory_arrays(data: dict[str, np.ndarray], obs_layout: str | None = None) -> dict[str, np.ndarray]:
    """The arrays handed to d3rlpy: observations, actions, rewards, terminals (float32, 1 at
    each node-episode's last slot) and the masks, in trajectory order."""
    order = trajectory_order(data)
    width = obs_width(data, obs_layout)
    return {"observations": np.ascontiguousarray(data["observations"][order, :width]),
            "actions": data["actions"][order], "rewards": data["rewards"][order],
            "terminals": data["terminals"][order].astype(np.float32),
            "action_masks": data["action_masks"][order]}


def to_mdp_dataset(data: dict[str, np.ndarray], obs_layout: str | None = None):
    """A d3rlpy ``MDPDataset`` (discrete actions, N + 1) of a data set in the project's layout."""
    d3rlpy = d3rlpy_module()
    arrays = trajectory_arrays(data, obs_layout)
    return d3rlpy.dataset.MDPDataset(
        observations=arrays["observations"], actions=arrays["actions"],
        rewards=arrays["rewards"], terminals=arrays["terminals"],
        action_space=d3rlpy.ActionSpace.DISCRETE, action_size=data["action_masks"].shape[1])


def make_algorithm(name: str, batch_size: int | None = None):
    """A d3rlpy algorithm with its default settings (see ``TARGET_UPDATE_INTERVAL``), on CPU."""
    d3rlpy = d3rlpy_module()
    extra: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    if name == "discrete_cql":
        config = d3rlpy.algos.DiscreteCQLConfig(target_update_interval=TARGET_UPDATE_INTERVAL, **extra)
    elif name == "discrete_bcq":
        config = d3rlpy.algos.DiscreteBCQConfig(target_update_interval=TARGET_UPDATE_INTERVAL, **extra)
    elif name == "discrete_bc":
        config = d3rlpy.algos.DiscreteBCConfig(**extra)
    else:
        raise UserError(f"unknown d3rlpy algorithm {name!r}; choose from {', '.join(ALGORITHMS)}")
    return config.create(device=False)


def fit(name: str, dataset, steps: int, seed: int = 0, batch_size: int | None = None):
    """The algorithm ``name`` fitted for ``steps`` gradient steps on an ``MDPDataset``
    (no files written, one torch thread, seeded)."""
    import torch

    d3rlpy = d3rlpy_module()
    torch.set_num_threads(1)
    d3rlpy.seed(seed)
    algo = make_algorithm(name, batch_size)
    algo.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, show_progress=False,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    return algo


def action_scores(algo, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(M, A) scores whose argmax is the algorithm's greedy action among the available ones
    (-inf where an action is unavailable or BCQ rules it out)."""
    import torch

    d3rlpy = d3rlpy_module()
    impl = algo.impl
    x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
    allowed = torch.as_tensor(np.asarray(mask, dtype=bool))
    with torch.no_grad():
        if isinstance(algo, d3rlpy.algos.DiscreteBC):
            scores = impl._modules.imitator(x).logits
        elif isinstance(algo, d3rlpy.algos.DiscreteBCQ):
            logits = impl._modules.imitator(x).logits.masked_fill(~allowed, -math.inf)
            log_probs = torch.log_softmax(logits, dim=1)
            ratio = log_probs - log_probs.max(dim=1, keepdim=True).values
            allowed = allowed & (ratio > math.log(impl._action_flexibility))
            scores = impl._q_func_forwarder.compute_expected_q(x)
        else:
            scores = impl._q_func_forwarder.compute_expected_q(x)
        scores = scores.masked_fill(~allowed, -math.inf)
    return scores.double().numpy()


def masked_greedy(algo, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.argmax(action_scores(algo, obs, mask), axis=1).astype(np.int64)


class D3rlpyRule(DRLRule):
    """A fitted d3rlpy algorithm as a decentralized scheduler: each deciding node builds its
    observation as the ``drl`` rule does (probing every node) and takes ``masked_greedy``."""

    name = "d3rlpy"

    def __init__(self, algo, observer: Observer, width: int):
        self.algo, self.observer, self.width = algo, observer, width
        self.reads = frozenset({"recv_len"} | ({"send_backlog_s"} if observer.obs_layout == OBS_LAYOUT_V2 else set()))
        self._last = None

    def choose(self, view, probes) -> np.ndarray:
        obs, mask = self.observe(view, probes)
        return masked_greedy(self.algo, obs[:, :self.width], mask)

    def action_prob(self, view, actions):
        return np.ones(view.m)      # greedy: the chosen action has probability 1


def evaluate_algorithm(algo, scenario: Scenario, network: Network, seeds, width: int,
                       batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-episode metrics (as ``simulate``) of the fitted algorithm run on ``seeds``."""
    rule = D3rlpyRule(algo, Observer(scenario, network, OBS_LAYOUT_V2), width)
    return simulate(scenario, network, list(seeds), rule, batch_size=batch_size)
