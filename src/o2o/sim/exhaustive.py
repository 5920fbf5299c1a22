"""Exhaustive search over open-loop plans on tiny instances: the optimum ``central`` and the bounds
are checked against (tests/sim/test_yardsticks.py, scripts/central_vs_exhaustive.py).

A plan fixes the destination of every task of an episode before it starts. Every plan runs on
the real ``Engine``, all at once as one batch. With failure rates 0 the dynamics are
deterministic and the best plan's successes are the most any scheduler can reach on that episode
(a plan may even use future arrivals; so the best plan is at least what ``central``, which does
not, can reach). With failures, a plan's expected successes are estimated on ``draws`` failure-
clock draws shared by every plan and by ``central``; the best plan's estimate is then biased
upwards (the maximum of many noisy means), and an adaptive scheduler that sees failures as they
happen may beat every open-loop plan.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from o2o.core.episodes import Episodes
from o2o.core.network import Network
from o2o.core.outcomes import SUCCESS
from o2o.core.scenario import Scenario
from o2o.sim.engine import Engine

#: Instances with more plans than this are refused (N ** tasks plans, each one engine episode).
MAX_PLANS = 20_000


def repeat_episode(episodes: Episodes, b: int, copies: int) -> Episodes:
    """``copies`` copies of episode ``b`` (same tasks and clocks)."""
    return Episodes(**{k: np.repeat(getattr(episodes, k)[b:b + 1], copies, axis=0)
                       for k in Episodes.__dataclass_fields__})


def with_clocks(episodes: Episodes, rng: np.random.Generator, draws: int) -> Episodes:
    """Episode 0 of ``episodes`` ``draws`` times, each with fresh Exp(1) failure clocks."""
    base = repeat_episode(episodes, 0, draws)
    shape = base.has_task.shape
    return replace(base, tx_fail_clock=rng.exponential(size=shape), exec_fail_clock=rng.exponential(size=shape))


def plan_successes(scenario: Scenario, network: Network, episodes: Episodes) -> tuple[np.ndarray, np.ndarray]:
    """Every plan on every episode of ``episodes`` (the same tasks, different clocks allowed).

    Returns (plans (P, K): the destination of each task, in (slot, node) order; successes
    (P, B): the successes of each plan on each episode)."""
    B = episodes.batch
    t_idx, i_idx = np.nonzero(episodes.has_task[0])
    n, k = network.n, t_idx.size
    if n ** k > MAX_PLANS:
        raise ValueError(f"{n ** k} plans: too many for exhaustive search (at most {MAX_PLANS})")
    plans = np.array(list(itertools.product(range(n), repeat=k)), dtype=np.int64).reshape(-1, k)
    P = plans.shape[0]
    batch = Episodes(**{f: np.tile(getattr(episodes, f), (P,) + (1,) * (getattr(episodes, f).ndim - 1))
                        for f in Episodes.__dataclass_fields__})
    engine = Engine(scenario, network, batch)
    dest = np.repeat(plans, B, axis=0)   # plan p on episode b is row p * B + b
    while not engine.done:
        actions = np.full((P * B, n), n, dtype=np.int64)
        now = t_idx == engine.t
        actions[:, i_idx[now]] = dest[:, now]
        engine.step(actions)
    successes = (engine.outcome == SUCCESS).sum(axis=(1, 2)).reshape(P, B)
    return plans, successes


def scheduler_successes(scenario: Scenario, network: Network, episodes: Episodes, scheduler) -> np.ndarray:
    """(B,) successes of ``scheduler`` on each episode of ``episodes``."""
    from o2o.sim.rollout import rollout

    engine = rollout(scenario, network, episodes, scheduler).engine
    return (engine.outcome == SUCCESS).sum(axis=(1, 2))
