"""How an edge node decides where its task goes (paper IV-B; the Scheduler of paper VI-A).

The rule is the simulator's, written once over a ``NodeView`` (``o2o.schedulers``): a heuristic,
or ``drl``, the numpy actor of a model from the store. A testbed node hands it a batch of one
view built from its live state (its queues, its receiving queues from the announcements, its
send backlogs, its links), sends real probe requests to the nodes the rule names, and lets the
rule choose among them with the answers. Randomness is the episode's per-task uniforms, sent
with the task, so ``random`` makes the simulator's choices.
"""

from __future__ import annotations

import asyncio
import math
from typing import Awaitable, Callable

import numpy as np

from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.schedulers.base import NodeView, ProbeAnswers
from o2o.schedulers.heuristics import Rule
from o2o.testbed import wire

# The backlog a node logs for a peer that did not answer its probe (seen as infinite): any
# value above twice the largest deadline is clipped to the same observation.
PROBE_BACKLOG_CAP_S = 1e9


class Decider:
    """The rule node ``index`` decides with, and the model behind ``drl``."""

    def __init__(self):
        self.rule: Rule | None = None
        self.scheduler_name: str | None = None
        self.scheduler_params: dict[str, float] | None = None   # a tunable rule's values; None: defaults
        self.model = None
        self.model_version: int | None = None
        self.model_sha256: str | None = None
        self.pending_model: wire.ModelAvailable | None = None   # announced, loaded at the next prepare

    def use_model(self, model, version: int, sha256: str) -> None:
        """A model was loaded (checksum verified): ``drl`` is built from it next time."""
        self.model, self.model_version, self.model_sha256 = model, version, sha256
        self.rule = None
        self.scheduler_name = None
        self.scheduler_params = None

    def build(self, name: str, scenario: Scenario, network: Network, index: int,
              params: dict[str, float] | None = None) -> str | None:
        """Make ``name`` the rule, at ``params`` (a tunable rule's values; None: its defaults),
        kept if it already is; an error message or None."""
        from o2o.core.errors import UserError
        from o2o.schedulers import HEURISTICS, make_rule

        params = dict(params) if params else None
        if name == self.scheduler_name and params == self.scheduler_params and self.rule is not None:
            return None
        if params is not None and name not in HEURISTICS:
            return f"node {index}: {name} takes no parameters (got {', '.join(sorted(params))})"
        if name in HEURISTICS:
            try:   # names and ranges checked as the simulator checks them
                rule = make_rule(name, params)
                fits = getattr(rule, "check_nodes", None)
                if fits is not None:
                    fits(network.n)
            except UserError as exc:
                return f"node {index}: {exc}"
            self.rule = rule
        elif name == "drl":
            if self.model is None:
                return f"node {index}: scheduler drl needs a model, none was announced"
            from o2o.models import ModelError
            from o2o.schedulers.drl import DRLRule

            try:  # the model's nodes_range and trained ranges are checked against the scenario
                self.rule = DRLRule.from_model(self.model, scenario, network)
            except ModelError as exc:
                return f"node {index}: {exc}"
        else:
            return f"node {index}: unknown scheduler {name!r}"
        self.scheduler_name, self.scheduler_params = name, params
        return None

    async def choose(self, view: NodeView, probe: Callable[[np.ndarray], Awaitable[ProbeAnswers]],
                     own_backlog_s: Callable[[], float]) -> tuple[int, float | None, list[float | None]]:
        """(destination, its probability under the rule or None, the execution backlogs it
        learned) for the view's task, after probing the nodes the rule names.

        The backlogs are what the task log keeps to rebuild observation v2: the probed nodes'
        (an unreachable peer's infinite one capped at ``PROBE_BACKLOG_CAP_S``, which the
        observation clips the same way), its own, None for the peers it did not probe."""
        targets = np.flatnonzero(self.rule.probe_targets(view)[0])
        answers = await probe(targets)
        dest = int(self.rule.choose(view, answers)[0])
        prob = self.rule.action_prob(view, np.array([dest]))
        i = int(view.node[0])
        probed = set(targets.tolist())
        backlog = [min(float(answers.exec_backlog_s[0, j]), PROBE_BACKLOG_CAP_S) if j in probed else None
                   for j in range(view.n)]
        if i not in probed:
            backlog[i] = own_backlog_s()
        return dest, None if prob is None or not np.isfinite(prob[0]) else float(prob[0]), backlog


def node_view(network: Network, i: int, task: wire.TaskSpec, remaining_s: float, exec_len: int,
              exec_wait: int, recv_len: np.ndarray, send_backlog_s: np.ndarray) -> NodeView:
    """The batch-of-one view of node i with a task: its own state now, its links."""
    return NodeView(
        n=network.n, node=np.array([i]), size_bytes=np.array([task.size_bytes]),
        cycles=np.array([task.cycles]),
        # What is left of the deadline now (a few ms less than d: delivery and decision).
        deadline_s=np.array([remaining_s]),
        exec_len=np.array([exec_len]), exec_wait=np.array([exec_wait]),
        overload_threshold=network.overload_threshold[[i]], recv_len=recv_len[None, :],
        link_rate_Bps=network.link_rate_Bps[[i]], link_fail_rate=network.link_fail_rate[[i]],
        send_backlog_s=send_backlog_s[None, :],
        u=np.array([task.sched_u]))


async def probe_nodes(targets: np.ndarray, i: int, network: Network,
                      ask: Callable[[int], Awaitable[wire.ProbeAnswer | None]],
                      own: Callable[[], wire.ProbeAnswer], peer_overloaded: np.ndarray) -> ProbeAnswers:
    """Real probe requests to ``targets`` (node i answers for itself), concurrently. A peer that
    is down or does not answer in time looks unreachable: infinite backlog, overloaded. The
    answers refresh ``peer_overloaded``."""
    n = network.n
    answers = ProbeAnswers(
        capacity_hz=network.capacity_hz[None, :].copy(), node_fail_rate=network.node_fail_rate[None, :].copy(),
        exec_backlog_s=np.zeros((1, n)), overloaded=np.zeros((1, n), dtype=bool))
    peers = [int(j) for j in targets if j != i]
    replies = await asyncio.gather(*(ask(j) for j in peers))
    for j, ans in zip(peers, replies):
        if ans is None:
            answers.exec_backlog_s[0, j] = math.inf
            answers.overloaded[0, j] = True
        else:
            answers.capacity_hz[0, j] = ans.capacity_hz
            answers.node_fail_rate[0, j] = ans.node_fail_rate
            answers.exec_backlog_s[0, j] = ans.exec_backlog_s
            answers.overloaded[0, j] = ans.overloaded
            peer_overloaded[j] = ans.overloaded
    if i in targets:
        mine = own()
        answers.exec_backlog_s[0, i] = mine.exec_backlog_s
        answers.overloaded[0, i] = mine.overloaded
    return answers
