"""One phase on a started testbed: a scheduler over a list of episode seeds, its task log written
as one run (paper VI-B: heuristic control, online fine-tuning, evaluation are such phases).

``run_phase`` runs on any started testbed (the launcher's ``LocalTestbed`` or ``AttachedNodes``
of a controller serving nodes started elsewhere); ``run_scheduler`` first announces the store's
latest model when the scheduler is ``drl``; ``run_local`` brings a local testbed up around one
such phase and takes it down again, and ``run_attached`` runs a controller for nodes started
elsewhere (other hosts, Kubernetes pods) around one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from o2o.core.errors import UserError
from o2o.core.network import Network
from o2o.core.progress import progress_bar
from o2o.core.scenario import Scenario
from o2o.testbed import wire
from o2o.testbed.controller import Controller, ControllerSettings, EpisodeResult
from o2o.testbed.launcher import (
    AttachedNodes,
    KillPlan,
    LocalTestbed,
    NamespacedTestbed,
)
from o2o.testbed.recorder import stack_metrics


@dataclass
class TestbedSetup:
    """What a testbed runs on: the scenario, the network drawn from ``network_seed``, how the
    nodes run, how the controller watches them, and where the processes live (``hosts``:
    ``local`` on loopback, ``netns`` in network namespaces of their own on ``subnet``)."""

    __test__ = False   # not a pytest test class

    scenario: Scenario
    network: Network
    runtime: wire.NodeRuntime
    network_seed: int
    heartbeat_timeout_s: float = 1.0
    log_dir: str | Path | None = None
    hosts: str = "local"
    subnet: str | None = None

    def local_testbed(self) -> LocalTestbed:
        if self.hosts == "netns":
            return NamespacedTestbed(self.scenario, self.network, runtime=self.runtime,
                                     heartbeat_timeout_s=self.heartbeat_timeout_s, log_dir=self.log_dir,
                                     subnet=self.subnet)
        return LocalTestbed(self.scenario, self.network, runtime=self.runtime,
                            heartbeat_timeout_s=self.heartbeat_timeout_s, log_dir=self.log_dir)


@dataclass
class TestbedRun:
    """What one phase produced."""

    __test__ = False   # not a pytest test class

    results: list[EpisodeResult]
    run_id: int | None = None
    killed: list[dict] = field(default_factory=list)
    policy_version: int | None = None
    where: str | None = None          # where the processes ran, when not all on loopback

    def metrics(self) -> dict[str, np.ndarray]:
        return stack_metrics([r.metrics for r in self.results])


def params_text(params: dict[str, float]) -> str:
    """A rule's values as the testbed writes them: ``local_margin=0.8, peer_margin=0.9``."""
    return ", ".join(f"{k}={float(v)!r}" for k, v in sorted(params.items()))


def params_note(params: dict[str, float]) -> str:
    """How a run's note records the values its rule ran at: ``params local_margin=0.8, ...``."""
    return "params " + params_text(params)


async def run_phase(tb, store, scenario: Scenario, network: Network, scheduler: str,
                    seeds: list[int], *, network_seed: int, phase: str, kills=(), first_index: int = 0,
                    policy_version: int | None = None, progress=None, note: str | None = None,
                    params: dict[str, float] | None = None) -> TestbedRun:
    """Run ``seeds`` with ``scheduler`` (at ``params``, a tunable rule's values; None: its
    defaults) on a started testbed; write the task log as one run (``store`` None: no log), its
    note naming the values. ``kills`` are ``KillPlan``s, their episode relative to ``seeds``."""
    writer = None
    if params:
        note = "; ".join(x for x in (note, params_note(params)) if x)
    if store is not None:
        writer = await asyncio.to_thread(
            store.start_run, scenario, network, scheduler, source="testbed", phase=phase,
            network_seed=network_seed, policy_version=None if policy_version is None else str(policy_version),
            note=note)
    results: list[EpisodeResult] = []

    async def on_episode(result: EpisodeResult) -> None:
        if writer is not None:
            await asyncio.to_thread(writer.write_episodes, [result.log])
        if progress is not None:
            progress(1)

    try:
        for k, seed in enumerate(seeds):
            got = await tb.run(scheduler, [seed], first_index=first_index + k, params=params,
                               kills=[KillPlan(p.node, 0, p.slot) for p in kills if p.episode == k])
            await on_episode(got[0])
            results.extend(got)
    except BaseException:
        if writer is not None:
            await asyncio.to_thread(writer.finish, "interrupted")
        raise
    if writer is not None:
        await asyncio.to_thread(writer.finish, "completed")
    return TestbedRun(results, run_id=None if writer is None else writer.run_id,
                      killed=list(tb.killed), policy_version=policy_version, where=getattr(tb, "where", None))


def latest_model(store_url: str, nodes: int) -> tuple[int, str]:
    """(version, sha256) of the store's latest model, checked for this many nodes."""
    from o2o.models import ModelError, ModelStore

    store = ModelStore(store_url)
    version = store.latest()
    if version is None:
        raise ModelError(f"model store {store_url} has no versions yet (train one with "
                         "`o2o testbed trainer` or `o2o train offline`)")
    model = store.load(version, nodes=nodes)
    return version, model.manifest["sha256"]


async def announce_latest_model(controller: Controller, store_url: str, nodes: int) -> int:
    """Tell the nodes to load the store's latest model before the next episode; its version."""
    version, sha = latest_model(store_url, nodes)
    await controller.announce_model(store_url, version, sha)
    return version


async def run_scheduler(tb, store, setup: TestbedSetup, scheduler: str, seeds: list[int], *,
                        model: str | None = None, phase: str, kills=(), desc: str | None = None,
                        show_progress: bool = False, params: dict[str, float] | None = None) -> TestbedRun:
    """``run_phase`` with the store's latest model announced first when ``scheduler`` is drl."""
    version = None
    if scheduler == "drl":
        version = await announce_latest_model(tb.controller, model, setup.network.n)
    with progress_bar(total=len(seeds), desc=desc or f"testbed {scheduler}", unit="episode",
                      disable=not show_progress) as bar:
        return await run_phase(tb, store, setup.scenario, setup.network, scheduler, seeds,
                               network_seed=setup.network_seed, phase=phase, kills=kills,
                               policy_version=version, progress=bar.update, params=params)


def run_local(setup: TestbedSetup, scheduler: str, seeds: list[int], *, db: str | None = None,
              model: str | None = None, phase: str, kills=(), desc: str | None = None,
              show_progress: bool = False, params: dict[str, float] | None = None) -> TestbedRun:
    """Bring a local testbed up, run one phase (``scheduler`` at ``params``, a tunable rule's
    values; None: its defaults) with its task log in ``db`` (None: no log), and
    take the testbed down; no node process (and with ``hosts = netns`` no namespace or
    interface) is left behind, also on an error, Ctrl-C or SIGTERM."""
    from o2o.logs.store import LogStore

    if scheduler == "drl":
        latest_model(model, setup.network.n)  # a bad model store is refused before anything is made

    def open_log():
        return LogStore.open(db, create=True) if db is not None else contextlib.nullcontext()

    async def phase_on(tb, store) -> TestbedRun:
        return await run_scheduler(tb, store, setup, scheduler, seeds, model=model, phase=phase,
                                   kills=kills, desc=desc, show_progress=show_progress, params=params)

    async def main() -> TestbedRun:
        # SIGTERM ends the run as Ctrl-C does: through the same clean-up.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, os.kill, os.getpid(), signal.SIGINT)
        if setup.hosts == "netns":
            # The task log is opened from the controller's namespace once the test network is
            # up: a database server is reached over the bridge.
            async with setup.local_testbed() as tb:
                try:
                    log_store = open_log()
                except UserError as exc:
                    raise UserError(f"{exc} (with --hosts netns the server must accept connections on "
                                    f"the bridge address from the controller's {tb.net.plan.controller_ip})"
                                    ) from None
                with log_store as store:
                    return await phase_on(tb, store)
        with open_log() as store:
            async with setup.local_testbed() as tb:
                return await phase_on(tb, store)

    return asyncio.run(main())


def run_attached(setup: TestbedSetup, scheduler: str, seeds: list[int], *, key: bytes, host: str,
                 port: int, wait_nodes_s: float, db: str, model: str | None = None, phase: str,
                 shutdown_nodes: bool = True, params: dict[str, float] | None = None) -> TestbedRun:
    """Serve a controller on ``host:port``, wait for the scenario's nodes to register, run one
    phase with its task log in ``db``, and close the controller (asking the nodes to exit
    unless ``shutdown_nodes`` is False: they then wait for the next controller)."""
    from o2o.logs.store import LogStore

    if scheduler == "drl":
        latest_model(model, setup.network.n)  # a bad model store is refused before anything starts

    async def main() -> TestbedRun:
        controller = Controller(setup.scenario, setup.network, ControllerSettings(
            key=key, host=host, port=port, runtime=setup.runtime,
            heartbeat_timeout_s=setup.heartbeat_timeout_s))
        # The task log first: a bad --db is refused at once, not after the nodes came.
        with LogStore.open(db, create=True) as store:
            await controller.start()
            try:
                await controller.wait_for_nodes(setup.network.n, wait_nodes_s)
                return await run_scheduler(AttachedNodes(controller), store, setup, scheduler, seeds,
                                           model=model, phase=phase, params=params)
            finally:
                await controller.close("controller finished", shutdown_nodes=shutdown_nodes)

    return asyncio.run(main())
