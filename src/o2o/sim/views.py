"""The simulator's side of the scheduler interface: views and probe answers read off the engine."""

from __future__ import annotations

import numpy as np

from o2o.schedulers.base import NodeView, ProbeAnswers
from o2o.sim.engine import Engine, NodeState


def node_views(engine: Engine, state: NodeState, b: np.ndarray, i: np.ndarray,
               reads: frozenset[str] | None = None) -> NodeView:
    """Views of the deciding nodes (b, i) at the engine's current slot. Of the per-peer
    (M, N) fields only those in ``reads`` are gathered (all when None); the others are None."""
    t = engine.t
    net = engine.net
    peer = {
        "recv_len": lambda: state.in_flight[b, i],
        "link_rate_Bps": lambda: net.link_rate_Bps[i],
        "link_fail_rate": lambda: net.link_fail_rate[i],
        "send_backlog_s": lambda: state.send_backlog_s[b, i],
    }
    gathered = {k: (f() if reads is None or k in reads else None) for k, f in peer.items()}
    return NodeView(
        n=engine.N,
        node=i,
        size_bytes=engine.ep.size_bytes[b, t, i],
        cycles=engine.ep.cycles[b, t, i],
        deadline_s=engine.ep.deadline_s[b, t, i],
        exec_len=state.exec_len[b, i],
        exec_wait=state.exec_wait[b, i],
        overload_threshold=net.overload_threshold[i],
        **gathered,
        u=engine.ep.sched_u[b, t, i],
    )


def probe_answers(engine: Engine, state: NodeState, b: np.ndarray) -> ProbeAnswers:
    """Every node's answer to a probe, for the episodes b (M, N)."""
    m, n = b.shape[0], engine.N
    return ProbeAnswers(
        capacity_hz=np.broadcast_to(engine.net.capacity_hz, (m, n)),
        node_fail_rate=np.broadcast_to(engine.net.node_fail_rate, (m, n)),
        exec_backlog_s=state.exec_backlog_s[b],
        overloaded=state.overloaded[b],
    )
