"""O2O-DRL on the testbed (paper VI-B), ``o2o testbed o2o``: the same phases as the main job, but
every episode runs on real node processes and every learning step reads the testbed's own task
log.

1. **Heuristic control**: the heuristic's episodes (seeds from ``LOGS``) are logged.
2. **Offline training** (Algorithm 1) on those logs; the policy is published to the model store
   and the nodes hot-swap to it.
3. **Online fine-tuning**: rounds of episodes with the current model (seeds from ``online(k)``),
   each followed by one Algorithm 2 update on that round's logs and a new published version.
4. **Evaluation** of the heuristics, offline-only and O2O-DRL (and, on request, the
   online-only baseline: the same online rounds from random weights) on the same held-out
   episodes (``TEST``).

The learner starts from the same settings as the main job (``o2o.learn.settings``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

from o2o.core import seeds
from o2o.core.errors import UserError
from o2o.learn.from_logs import (
    Published,
    finetune_from_logs,
    publish,
    train_offline_from_logs,
)
from o2o.learn.settings import LearnerSettings
from o2o.logs.store import LogStore
from o2o.models import ModelStore
from o2o.experiments.tuning import logging_params
from o2o.testbed.phase import TestbedRun, TestbedSetup, params_note, run_phase


@dataclass(frozen=True)
class TestbedPlan:
    """How much of each phase; the paper's testbed budget is 200 logged episodes and 50 online
    episodes, the default here is a run of a few minutes."""

    __test__ = False   # not a pytest test class

    collect_episodes: int = 20
    offline_steps: int = 3000
    online_rounds: int = 5
    episodes_per_round: int = 2
    eval_episodes: int = 5


@dataclass
class TestbedReport:
    """The phases' runs (by method name), the model versions, and which version each node ran."""

    __test__ = False

    runs: dict[str, TestbedRun]
    versions: dict[str, int]
    collect_run: int
    eval_seeds: list[int]
    nodes_on_final_model: list[int] = field(default_factory=list)
    log_params: dict[str, float] | None = None   # the logging heuristic's tuned values; None: defaults


async def _testbed_o2o(tb, store, setup: TestbedSetup, plan: TestbedPlan, settings: LearnerSettings,
                       model_store: str, heuristic: str, baselines: list[str], training_seed: int,
                       eval_seeds: list[int], say: Callable[[str], None], online_only: bool = False,
                       evaluate_heuristic: bool = True, params: dict[str, float] | None = None,
                       baseline_params: dict[str, dict[str, float]] | None = None) -> TestbedReport:
    common = {"network_seed": setup.network_seed}
    sc, net = setup.scenario, setup.network
    at = f" at its tuned values ({params_note(params)})" if params else ""
    say(f"[1/4] {heuristic}{at}: {plan.collect_episodes} episodes of logs")
    collect = await run_phase(tb, store, sc, net, heuristic, seeds.LOGS.take(plan.collect_episodes),
                              phase="heuristic", params=params, **common)
    say(f"[2/4] offline training, {plan.offline_steps} steps on run {collect.run_id}")
    offline: Published = await asyncio.to_thread(
        train_offline_from_logs, store, [collect.run_id], model_store, steps=plan.offline_steps,
        seed=training_seed, settings=settings.offline, reward_credit=settings.reward_credit,
        obs_layout=settings.obs_layout)
    current = await _online_rounds(tb, store, setup, plan, settings, model_store, offline,
                                   training_seed, "o2o-drl", say)
    published_by_label = {"offline-only": offline, "o2o-drl": current}
    if online_only:
        # The online-only baseline (paper V-B): the same rounds on the same episodes, from a
        # random initialisation with the settings' reward credit, published as its own version.
        initial = await asyncio.to_thread(publish_initial_policy, model_store, sc, net, settings,
                                          training_seed)
        published_by_label["online-only"] = await _online_rounds(
            tb, store, setup, plan, settings, model_store, initial, training_seed, "online-only", say)
    say(f"[4/4] evaluation: {len(eval_seeds)} episodes each")
    runs: dict[str, TestbedRun] = {}
    if evaluate_heuristic:   # the logging heuristic as it logged: at its tuned values where it was
        runs[heuristic_label(heuristic, params)] = await run_phase(
            tb, store, sc, net, heuristic, eval_seeds, phase="evaluation", params=params, **common)
    for name in baselines:
        at = (baseline_params or {}).get(name)
        runs[heuristic_label(name, at)] = await run_phase(tb, store, sc, net, name, eval_seeds,
                                                          phase="evaluation", params=at, **common)
    for label, published in published_by_label.items():
        await tb.controller.announce_model(model_store, published.version, published.sha256)
        runs[label] = await run_phase(tb, store, sc, net, "drl", eval_seeds, phase="evaluation",
                                      policy_version=published.version, note=label, **common)
    # Every node reported the version it loaded, verified by checksum, before each drl phase.
    nodes_on_final = sorted(i for i, h in tb.controller.nodes.items()
                            if h.ready and max(h.ready.items())[1].model_version == current.version)
    versions = {"offline": offline.version, "o2o": current.version}
    if "online-only" in published_by_label:
        versions["online_only"] = published_by_label["online-only"].version
    return TestbedReport(runs, versions, collect.run_id, eval_seeds, nodes_on_final, params)


async def _online_rounds(tb, store, setup: TestbedSetup, plan: TestbedPlan, settings: LearnerSettings,
                         model_store: str, start: Published, training_seed: int, label: str,
                         say: Callable[[str], None]) -> Published:
    """Algorithm 2 on the testbed from the published ``start``: rounds of episodes (seeds from
    ``online(training_seed)``) with the current version, each followed by one update on that
    round's logs and a new published version; the last one."""
    common = {"network_seed": setup.network_seed}
    current = start
    await tb.controller.announce_model(model_store, current.version, current.sha256)
    online_seeds = seeds.online(training_seed)
    for r in range(plan.online_rounds):
        round_seeds = online_seeds.take(plan.episodes_per_round, r * plan.episodes_per_round)
        say(f"[3/4] {label} online round {r + 1}/{plan.online_rounds}: {len(round_seeds)} "
            f"episodes with model version {current.version}")
        online = await run_phase(tb, store, setup.scenario, setup.network, "drl", round_seeds,
                                 phase="online", policy_version=current.version, note=label, **common)
        current = await asyncio.to_thread(
            finetune_from_logs, store, [online.run_id], model_store, seed=training_seed + r,
            settings=settings.online, version=current.version)
        await tb.controller.announce_model(model_store, current.version, current.sha256)
    return current


def publish_initial_policy(model_store: str, scenario, network, settings: LearnerSettings,
                           training_seed: int) -> Published:
    """A randomly initialised actor and critic (seeded by the training seed), the start of the
    online-only baseline, published as the next version of ``model_store``."""
    import torch

    from o2o.learn.online import initial_policy

    torch.manual_seed(training_seed)
    policy = initial_policy(network.n, settings.online, settings.obs_layout, settings.reward_credit)
    return publish(model_store, policy, {"phase": "initial", "source": "testbed",
                                         "seed": training_seed})


def heuristic_label(name: str, params: dict[str, float] | None) -> str:
    """The name of a rule's row: ``NAME (tuned)`` at tuned values."""
    return f"{name} (tuned)" if params else name


def run_testbed_heuristics(setup: TestbedSetup, names: list[str], eval_seeds: list[int], *,
                           db: str | None = None, params: dict[str, dict[str, float]] | None = None
                           ) -> dict[str, TestbedRun]:
    """Each decentralized heuristic of ``names`` on the same ``eval_seeds``, on one local
    testbed brought up for them all (task log in ``db``, None: none); a rule in ``params`` runs
    at its values there."""
    import contextlib

    async def main() -> dict[str, TestbedRun]:
        runs: dict[str, TestbedRun] = {}
        with LogStore.open(db, create=True) if db is not None else contextlib.nullcontext() as store:
            async with setup.local_testbed() as tb:
                for name in names:
                    runs[name] = await run_phase(tb, store, setup.scenario, setup.network, name,
                                                 eval_seeds, network_seed=setup.network_seed,
                                                 phase="evaluation", params=(params or {}).get(name))
        return runs

    return asyncio.run(main())


def run_testbed_o2o(setup: TestbedSetup, plan: TestbedPlan, settings: LearnerSettings, *, db: str,
                    model_store: str, heuristic: str | None = None, baselines: list[str] = ("rda",),
                    training_seed: int = 0, eval_seeds: list[int] | None = None,
                    say: Callable[[str], None] = lambda _msg: None, online_only: bool = False,
                    evaluate_heuristic: bool = True, tuned: dict[str, dict] | None = None) -> TestbedReport:
    """Bring a local testbed up, run the four phases with the task log in ``db`` and the
    models in a new ``model_store``, take the testbed down. ``heuristic``: the one whose logs
    the offline phase learns from (default the settings'). ``online_only`` adds the
    online-only baseline (the same online rounds from random weights); ``evaluate_heuristic``
    False leaves the logging heuristic out of the evaluation (a sweep evaluates the heuristics
    apart, once per point). With the settings' ``log_tuned`` a tunable logging heuristic runs on
    the nodes at its values for this network: ``tuned``'s record for it (an ``o2o tune`` file),
    else tuned here in the simulator on validation episodes of the same scenario and network
    (``o2o.experiments.tuning.logging_params``, before any node starts); it is evaluated at
    the same values, as ``NAME (tuned)``, and so is a baseline that has a record in ``tuned``."""
    heuristic = heuristic or settings.log_heuristic
    if ModelStore(model_store).latest() is not None:
        raise UserError(f"model store {model_store} already holds versions; give a new --store "
                        "folder so that the pipeline's versions are its own")
    eval_seeds = list(eval_seeds) if eval_seeds is not None else seeds.TEST.take(plan.eval_episodes)
    params = logging_params(heuristic, settings.log_tuned, setup.scenario, setup.network,
                            network_seed=setup.network_seed, tuning=tuned)
    if params:
        say(f"{heuristic} runs at the values tuned for network {setup.network_seed}: {params_note(params)}")
    # A baseline with a tuning record runs at its values; the logging heuristic's own row is not
    # run twice.
    baseline_params = {b: dict(tuned[b]["params"]) for b in baselines if tuned and b in tuned}
    baselines = list(dict.fromkeys(b for b in baselines
                                   if b != heuristic or baseline_params.get(b) != params))

    async def main() -> TestbedReport:
        with LogStore.open(db, create=True) as store:
            async with setup.local_testbed() as tb:
                return await _testbed_o2o(tb, store, setup, plan, settings, model_store, heuristic,
                                          baselines, training_seed, eval_seeds, say, online_only,
                                          evaluate_heuristic, params, baseline_params)

    return asyncio.run(main())
