"""The ``drl`` scheduler: a learned actor run with numpy only (paper IV-C, VI-A).

An edge node runs the actor without PyTorch: ``NumpyActor`` is the MLP of ``o2o.learn.nets``
(Linear -> ReLU -> Linear -> ReLU -> Linear) over float32 arrays read from a model file, and
``DRLRule`` is a decentralized ``Rule`` like the heuristics:

1. it probes every node for its 1-bit overload flag (paper IV-B2: the mask's only input); on
   layout ``o2o-obs-v3-k<k>`` exactly k peers, ``o2o.core.decpomdp.probe_set`` of the task's
   uniform ``view.u[:, PROBE_SET_UNIFORM]`` (and itself, which needs no request);
2. it builds the node's observation with ``o2o.core.decpomdp.Observer`` from its own view;
3. it samples from the masked softmax by inverse CDF with the episode's uniform ``view.u[:, 2]``,
   so a simulated run is reproducible and every scheduler sees the same random numbers;
4. it reports the probability it gave to its action (``action_prob``), which the task log keeps.

Nothing here imports torch (tested in a subprocess with torch blocked).
"""

from __future__ import annotations

import numpy as np

from o2o.core.decpomdp import (
    OBS_LAYOUT_V3,
    OBS_LAYOUT_VERSION,
    is_probed,
    is_v3,
    layout_probes,
    SCORER_HEADS,
    FeatureScales,
    Observer,
    candidate_index,
    obs_dim,
    set_candidate_features,
)
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.models import (
    PRIOR_FIELDS,
    Model,
    ModelError,
    check_nodes,
    check_scenario_fits,
    load_model,
    prior_refusal,
)
from o2o.schedulers.base import NodeView, ProbeAnswers, sample_inverse_cdf
from o2o.schedulers.heuristics import Rule

__all__ = ["DRLRule", "NumpyActor", "RulePrior", "masked_softmax", "sample_inverse_cdf"]

# The uniform of NodeView.u used to sample the policy (0 and 1 are the heuristics' probe picks).
POLICY_UNIFORM = 2


# Columns of a candidate's features (``candidate_index``) the rule prior reads: is-itself,
# est_ij / (2 d) and rel_ij.
PRIOR_SELF, PRIOR_EST, PRIOR_REL = 0, 5, 7
PRIOR_TINY = 1e-30      # floor of rel and slack before their logarithm


class RulePrior:
    """The log-weight of ``slack-reliable`` (``o2o.schedulers.heuristics.SlackReliable``) at
    given values, as a fixed logit of each candidate j computed from j's own scorer features
    (``candidate_index``: is-itself, est_ij / (2 d), rel_ij; the paper's eqs. 4-5 estimates):

    * feasible (est_ij <= peer_margin d): ``rel_power log rel_ij + slack_power log(1 - est_ij / d)``
      clipped to [-cap, 0] (the rule's weight, up to a factor common to all candidates);
    * infeasible: ``-2 cap - 4 cap est_ij / d``, below every feasible candidate, and among the
      infeasible ones the earliest estimate first (the rule's "none feasible: the earliest");
      with ``gap`` set, a softer barrier the learner can cross: the candidate's own clipped
      log-weight minus ``gap`` minus est_ij / d (so still the earliest first when none is
      feasible);
    * the node's own candidate when est_ii <= local_margin d: ``+cap`` (the rule keeps it local).

    Overloaded peers are masked by the action mask, as the rule leaves them out. A scorer with a
    prior outputs ``prior_j + MLP(x_j)`` (a residual on the rule); with the MLP at zero it is the
    rule, up to terms of order exp(-cap). The torch ``Actor`` computes the same (``o2o.learn.nets``)."""

    FIELDS = (*PRIOR_FIELDS, "gap")

    def __init__(self, local_margin: float, peer_margin: float, rel_power: float, slack_power: float,
                 cap: float = 10.0, gap: float | None = None):
        self.local_margin, self.peer_margin = float(local_margin), float(peer_margin)
        self.rel_power, self.slack_power, self.cap = float(rel_power), float(slack_power), float(cap)
        self.gap = None if gap is None else float(gap)
        why = prior_refusal(self.as_dict())   # the check a model file's prior gets too
        if why:
            raise ValueError(f"rule prior values {why}, got {self.as_dict()}")

    def as_dict(self) -> dict[str, float]:
        """The values (``gap`` only when set, so a prior without it reads as before)."""
        return {k: getattr(self, k) for k in self.FIELDS if getattr(self, k) is not None}

    @classmethod
    def from_value(cls, value) -> "RulePrior | None":
        """From None, a ``RulePrior``, a dict of ``FIELDS`` or a sequence (local_margin,
        peer_margin, rel_power, slack_power[, cap[, gap]])."""
        if value is None or isinstance(value, RulePrior):
            return value
        if isinstance(value, dict):
            return cls(**value)
        return cls(*value)

    def __eq__(self, other) -> bool:
        return isinstance(other, RulePrior) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"RulePrior({', '.join(f'{k}={v:g}' for k, v in self.as_dict().items())})"

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(..., N, K) candidate features -> (..., N) prior logits (float32)."""
        x = np.asarray(x, dtype=np.float32)
        f32 = np.float32
        e = f32(2.0) * x[..., PRIOR_EST]                                  # est_ij / d
        rel = np.maximum(x[..., PRIOR_REL], f32(PRIOR_TINY))
        slack = np.maximum(f32(1.0) - e, f32(PRIOR_TINY))
        cap = f32(self.cap)
        w = f32(self.rel_power) * np.log(rel) + f32(self.slack_power) * np.log(slack)
        feasible = e <= f32(self.peer_margin)
        clipped = np.clip(w, -cap, f32(0.0))
        if self.gap is None:
            out = np.where(feasible, clipped, f32(-2.0) * cap - f32(4.0) * cap * e)
        else:
            out = np.where(feasible, clipped, clipped - f32(self.gap) - e)
        local = (x[..., PRIOR_SELF] > f32(0.5)) & (e <= f32(self.local_margin))
        return np.where(local, cap, out).astype(np.float32)


def masked_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Softmax over the available actions of each row; masked actions get probability 0."""
    z = np.where(mask, logits.astype(np.float64), -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class NumpyActor:
    """pi_theta(a | o) from a model's actor weights, in numpy. Heads (``o2o.learn.nets``):
    ``plain`` and ``self`` map the observation to N+1 logits; ``scorer`` applies one MLP to the
    features of each candidate destination j (``candidate_index``: the columns of observation
    v2 that describe j) and gives the no-task action the logit 0; ``set-scorer`` does the same
    with each candidate's features followed by their mean and maximum over the candidates
    (``set_candidate_features``). The scorers' weights do not depend on N: the same layers run
    at any ``nodes`` (on layout v3, where nothing else in a candidate's features does either).
    ``feature_scales``: the scales of its observations (layout v3; None: the defaults)."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], self_head: bool = False,
                 head: str | None = None, nodes: int | None = None,
                 obs_layout: str = OBS_LAYOUT_VERSION, feature_scales: FeatureScales | None = None,
                 rule_prior: "RulePrior | None" = None):
        self.layers = [(np.ascontiguousarray(w.T, dtype=np.float32), np.asarray(b, dtype=np.float32))
                       for w, b in layers]
        self.head = head or ("self" if self_head else "plain")
        self.self_head = self.head == "self"
        self.obs_layout = obs_layout
        self.feature_scales = (feature_scales or FeatureScales()) if is_v3(obs_layout) else None
        self.rule_prior = RulePrior.from_value(rule_prior)
        if self.rule_prior is not None and self.head not in SCORER_HEADS:
            raise ValueError(f"a rule prior needs a scorer head, not {self.head}")
        if self.head in SCORER_HEADS:
            if nodes is None:
                raise ValueError("a scorer actor needs the number of nodes")
            self.index = candidate_index(nodes, obs_layout)
            self.obs_dim, self.n_actions = obs_dim(nodes, obs_layout), nodes + 1
        else:
            self.obs_dim = self.layers[0][0].shape[0]
            self.n_actions = self.layers[-1][0].shape[1] - int(self.self_head)

    @classmethod
    def from_model(cls, model: Model, nodes: int | None = None) -> "NumpyActor":
        """The model's actor for ``nodes`` nodes (default: its own N; another N only inside its
        ``nodes_range``)."""
        if nodes is None:
            nodes = model.nodes
        check_nodes(model, nodes)
        return cls(model.layers("actor"), head=model.actor_head, nodes=nodes,
                   obs_layout=model.obs_layout, feature_scales=model.feature_scales,
                   rule_prior=model.rule_prior)

    def _mlp(self, x: np.ndarray) -> np.ndarray:
        for k, (w, b) in enumerate(self.layers):
            x = x @ w + b
            if k < len(self.layers) - 1:
                np.maximum(x, 0.0, out=x)
        return x

    @classmethod
    def load(cls, url: str, nodes: int | None = None) -> "NumpyActor":
        return cls.from_model(load_model(url, nodes=nodes), nodes)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if self.head in SCORER_HEADS:
            x = obs[:, self.index]
            prior = None if self.rule_prior is None else self.rule_prior.logits(x)
            if self.head == "set-scorer":
                x = set_candidate_features(x)
            scores = self._mlp(x)[..., 0]                              # (M, N)
            if prior is not None:
                scores = scores + prior
            return np.concatenate([scores, np.zeros_like(scores[:, :1])], axis=1)
        x = self._mlp(obs)
        if self.self_head:
            # The extra unit is added to the deciding node's own action (one-hot in obs[:, :N]).
            n = self.n_actions - 1
            logits = x[:, :self.n_actions].copy()
            logits[:, :n] += np.asarray(obs, dtype=np.float32)[:, :n] * x[:, self.n_actions:]
            return logits
        return x

    def probs(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(M, N+1) masked policy probabilities (float64)."""
        return masked_softmax(self.logits(obs), np.asarray(mask, dtype=bool))


class DRLRule(Rule):
    """Decentralized rule that samples the learned actor's masked policy."""

    name = "drl"

    def __init__(self, actor: NumpyActor, observer: Observer):
        if actor.obs_dim != observer.dim or actor.n_actions != observer.n + 1:
            raise ModelError(f"actor has {actor.obs_dim} inputs and {actor.n_actions} actions, "
                             f"which do not fit {observer.n} nodes with layout {observer.obs_layout}")
        self.actor = actor
        self.observer = observer
        if layout_probes(actor.obs_layout) != observer.probes:  # v3-k: the same k
            raise ModelError(f"the actor reads {actor.obs_layout} observations, the observer builds "
                             f"{observer.obs_layout}")
        if is_v3(actor.obs_layout) and actor.feature_scales != observer.scales:
            raise ModelError(f"the actor reads {OBS_LAYOUT_V3} observations at its own feature scales "
                             f"({actor.feature_scales}), the observer builds them at {observer.scales}")
        # Observations v2 and v3 also read the own send backlogs (a node knows them).
        self.reads = frozenset({"recv_len"} | ({"send_backlog_s"} if is_probed(observer.obs_layout) else set()))
        self._last: tuple[int, np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_model(cls, model: Model | str, scenario: Scenario, network: Network) -> "DRLRule":
        """From a loaded ``Model`` or a model URL, bound to ``scenario`` and its network: the
        network's N must be in the model's ``nodes_range`` and the scenario inside its
        ``trained_ranges`` (``check_scenario_fits``); observations are built with the model's
        own feature scales (layout v3), never the scenario's."""
        if not isinstance(model, Model):
            model = load_model(model, nodes=network.n)
        check_nodes(model, network.n)
        check_scenario_fits(model, scenario)
        return cls(NumpyActor.from_model(model, network.n),
                   Observer(scenario, network, model.obs_layout, model.feature_scales))

    def probe_targets(self, view: NodeView) -> np.ndarray:
        # Every node: its 1-bit overload flag (v1, the mask) and, for layouts v2 and v3, its
        # backlog; layout v3-k: itself and its k probed peers.
        if self.observer.probes is not None:
            return self.observer.known(view.node, np.ones(view.m, dtype=bool), view.u)
        return np.ones((view.m, view.n), dtype=bool)

    def observe(self, view: NodeView, probes: ProbeAnswers) -> tuple[np.ndarray, np.ndarray]:
        """Observations (M, D) and masks (M, N+1) of deciding nodes (all have a task)."""
        has = np.ones(view.m, dtype=bool)
        probed = None
        if is_probed(self.observer.obs_layout):
            probed = (probes.exec_backlog_s, view.send_backlog_s, probes.overloaded)
        obs = self.observer.observe(view.node, view.exec_len, view.recv_len, has,
                                    view.size_bytes, view.cycles, view.deadline_s, probed, view.u)
        mask = self.observer.mask(view.node, has, probes.overloaded, view.u)
        return obs, mask

    def choose(self, view: NodeView, probes: ProbeAnswers) -> np.ndarray:
        obs, mask = self.observe(view, probes)
        probs = self.actor.probs(obs, mask)
        actions = sample_inverse_cdf(probs, view.u[:, POLICY_UNIFORM])
        self._last = (id(view), probs, actions)
        return actions

    def action_prob(self, view: NodeView, actions: np.ndarray) -> np.ndarray | None:
        if self._last is None or self._last[0] != id(view):
            return None
        probs = self._last[1]
        return probs[np.arange(view.m), np.asarray(actions, dtype=np.int64)]
