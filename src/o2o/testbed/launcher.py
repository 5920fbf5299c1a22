"""A whole testbed on one machine: the controller in this process, N node processes.

``LocalTestbed`` runs them on loopback. Ports are chosen free by the kernel (every server
listens on port 0 and reports the port it got), the shared token is fresh and random per
testbed and reaches the nodes through their environment (never their command line). Node output
goes to one log file per node. ``stop`` asks every node to shut down, waits, and only then
terminates and kills what is left, so a run leaves no process behind — also when it is
interrupted.

``NamespacedTestbed`` gives the controller and each node a network namespace of their own on
one bridge, with the links shaped by the kernel (``o2o.testbed.netns``): the launcher's main
thread moves into the controller's namespace for the run, so the controller's sockets (and
those of the task log's database client) are there, and each node is started inside its own
with ``ip netns exec``. Its ``stop`` also removes the namespaces and the bridge.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from o2o.core.errors import UserError
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.testbed import wire
from o2o.testbed.controller import Controller, ControllerSettings, EpisodeResult
from o2o.testbed.netns import CONTROLLER_PORT, NODE_PORT, NetnsNetwork, ThreadNetns

log = logging.getLogger("o2o.testbed.launcher")


@dataclass(frozen=True)
class KillPlan:
    """``--kill-node I@SLOT`` (first episode) or ``I@EPISODE:SLOT``: SIGKILL node I at that
    slot boundary."""

    node: int
    episode: int
    slot: int

    @classmethod
    def parse(cls, text: str, scenario: Scenario, episodes: int) -> "KillPlan":
        m = re.fullmatch(r"\s*(\d+)\s*@\s*(?:(\d+)\s*:)?\s*(\d+)\s*", text)
        if not m:
            raise UserError(f"--kill-node {text!r} must look like NODE@SLOT or NODE@EPISODE:SLOT, e.g. 2@20")
        node, episode, slot = int(m.group(1)), int(m.group(2) or 0), int(m.group(3))
        if node >= scenario.nodes:
            raise UserError(f"--kill-node {text}: node {node} does not exist (nodes 0..{scenario.nodes - 1})")
        if slot >= scenario.slots:
            raise UserError(f"--kill-node {text}: slot {slot} is past the episode's {scenario.slots} slots")
        if episode >= episodes:
            raise UserError(f"--kill-node {text}: episode {episode} is not run (--episodes {episodes})")
        return cls(node, episode, slot)


@dataclass
class LocalTestbed:
    scenario: Scenario
    network: Network
    runtime: wire.NodeRuntime = field(default_factory=wire.NodeRuntime)
    heartbeat_timeout_s: float = 1.0
    log_dir: Path | None = None
    restart_killed: bool = True
    start_timeout_s: float = 60.0
    python: str = sys.executable

    def __post_init__(self):
        self._token = secrets.token_hex(16)
        self._own_log_dir = self.log_dir is None
        self.log_dir = Path(self.log_dir) if self.log_dir else Path(tempfile.mkdtemp(prefix="o2o-testbed-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[int, subprocess.Popen] = {}
        self._all_procs: list[subprocess.Popen] = []
        self._logs: list = []
        self.controller: Controller | None = None
        self.killed: list[dict] = []
        self._restarts: set[asyncio.Task] = set()
        self.failed = False

    @property
    def key(self) -> bytes:
        return wire.token_key(self._token)

    @property
    def token(self) -> str:
        return self._token

    # ------------------------------------------------------------------ processes
    controller_host = "127.0.0.1"
    controller_port = 0

    async def start(self) -> None:
        settings = ControllerSettings(key=self.key, host=self.controller_host, port=self.controller_port,
                                      runtime=self.runtime, heartbeat_timeout_s=self.heartbeat_timeout_s)
        self.controller = Controller(self.scenario, self.network, settings)
        await self.controller.start()
        for i in range(self.network.n):
            self.spawn(i)
        try:
            await self._wait_registered(self.start_timeout_s)
        except UserError as exc:
            self.failed = True
            raise UserError(f"{exc}\n{self.exited_nodes_report()}") from None

    async def _wait_registered(self, timeout_s: float) -> None:
        """Until every node has registered; a node process that exits first ends the wait at
        once (it will not register), instead of after ``timeout_s``."""
        waiting = asyncio.ensure_future(self.controller.wait_for_nodes(self.network.n, timeout_s))
        try:
            while not waiting.done():
                exited = sorted(i for i, proc in self.procs.items() if proc.poll() is not None)
                if exited:
                    raise UserError(f"node process{'es' if len(exited) > 1 else ''} "
                                    f"{', '.join(map(str, exited))} exited before registering "
                                    f"with the controller")
                await asyncio.wait({waiting}, timeout=0.1)
            waiting.result()
        finally:
            waiting.cancel()

    def node_command(self, i: int) -> list[str]:
        return [self.python, "-m", "o2o.testbed.node", "--controller", f"127.0.0.1:{self.controller.port}",
                "--index", str(i), "--listen", "127.0.0.1:0", "--advertise", "127.0.0.1",
                "--connect-wait", str(self.start_timeout_s), "--controller-grace", "2"]

    def spawn(self, i: int) -> subprocess.Popen:
        env = dict(os.environ, **{wire.TOKEN_ENV: self._token})
        out = open(self.log_dir / f"node-{i}.log", "ab")
        self._logs.append(out)
        proc = subprocess.Popen(self.node_command(i), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs[i] = proc
        self._all_procs.append(proc)
        return proc

    def kill(self, i: int) -> None:
        """SIGKILL node i (a crash), and restart it once the controller has seen it die."""
        proc = self.procs.get(i)
        if proc is None or proc.poll() is not None:
            return
        self._kill_node_processes(i, proc)
        log.warning("killed node %d (pid %d)", i, proc.pid)
        if self.restart_killed:
            task = asyncio.create_task(self._restart(i, proc))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    def _kill_node_processes(self, i: int, proc: subprocess.Popen) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        self.killed.append({"node": i, "pid": proc.pid})

    async def _restart(self, i: int, proc: subprocess.Popen) -> None:
        await asyncio.to_thread(proc.wait)
        await self.controller.wait_dead(i, timeout_s=3 * self.heartbeat_timeout_s + 5)
        self.spawn(i)

    def exited_nodes_report(self) -> str:
        lines = []
        for i, proc in sorted(self.procs.items()):
            if proc.poll() is not None:
                tail = self.node_log(i)[-1500:].strip()
                lines.append(f"node {i} exited with code {proc.returncode}; its log ends:\n{tail}")
        return "\n".join([*lines, f"node logs are in {self.log_dir}"])

    def node_log(self, i: int) -> str:
        path = self.log_dir / f"node-{i}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ running
    async def run(self, scheduler: str, seeds: list[int], first_index: int = 0,
                  kills: list[KillPlan] = (), on_episode: Callable[[EpisodeResult], None] | None = None,
                  params: dict[str, float] | None = None) -> list[EpisodeResult]:
        """Run one episode per seed with ``scheduler`` (at ``params``, a tunable rule's values;
        None: its defaults); ``kills`` are episode-relative."""
        plan = {(k.episode, k.slot): k.node for k in kills}
        results = []
        for k, seed in enumerate(seeds):
            await self.wait_restarts()
            await self.controller.prepare(scheduler, params=params)

            def on_slot(_index, t, k=k):
                node = plan.get((k, t))
                if node is not None:
                    self.kill(node)

            result = await self.controller.run_episode(first_index + k, seed, scheduler, on_slot)
            results.append(result)
            if on_episode is not None:
                on_episode(result)
        return results

    async def wait_restarts(self, timeout_s: float = 60.0) -> None:
        """Wait for restarted nodes to register again (they join at the next prepare)."""
        if self._restarts:
            await asyncio.wait_for(asyncio.gather(*self._restarts), timeout_s)
        if self.restart_killed:
            await self.controller.wait_for_nodes(self.network.n, timeout_s)

    async def stop(self, reason: str = "run finished") -> None:
        for t in list(self._restarts):
            t.cancel()
        asked = set()
        if self.controller is not None:
            asked = {h.pid for h in self.controller.nodes.values()}
            await self.controller.close(reason)
        await asyncio.to_thread(self._reap, asked)
        for fh in self._logs:
            fh.close()
        if self._own_log_dir:
            if self.failed:
                log.warning("node logs kept in %s", self.log_dir)
            else:
                shutil.rmtree(self.log_dir, ignore_errors=True)

    def _reap(self, asked: set[int], grace_s: float = 5.0) -> None:
        """Wait for the node processes the controller asked to shut down (pids ``asked``; up to
        ``grace_s`` for all of them together), terminate the others (nodes that had not
        registered yet), then kill whatever does not exit."""
        deadline = time.monotonic() + grace_s
        for proc in self._all_procs:
            if proc.pid not in asked and proc.poll() is None:
                proc.terminate()
                continue
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                proc.terminate()
        deadline = time.monotonic() + 2.0
        for proc in self._all_procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        killed = {k["pid"] for k in self.killed}
        if any(p.returncode != 0 and p.pid not in killed for p in self._all_procs):
            self.failed = True   # keep the node logs for a look

    async def __aenter__(self) -> "LocalTestbed":
        try:
            await self.start()
        except BaseException:
            await self.stop("start failed")
            raise
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        # Node logs are kept for a look after a failure; an interrupt (Ctrl-C reaches a
        # coroutine as CancelledError) or a user error (a one-line message that says what to
        # change: a model store, a database, ...) is not one, and the logs go with the testbed.
        interrupted = exc_type is not None and issubclass(exc_type, (KeyboardInterrupt,
                                                                     asyncio.CancelledError))
        if exc_type is not None and not interrupted and not issubclass(exc_type, UserError):
            self.failed = True
        await self.stop("interrupted" if exc_type is not None else "run finished")


@dataclass
class NamespacedTestbed(LocalTestbed):
    """The controller and every node in a network namespace of its own on one bridge, each link
    shaped by the kernel at r_ij when ``runtime.pacing`` is ``kernel`` (``o2o.testbed.netns``).
    Needs root. ``subnet``: the test network (default: a free private /24)."""

    subnet: str | None = None

    def __post_init__(self):
        super().__post_init__()
        self.net: NetnsNetwork | None = None
        self._netns = ThreadNetns()

    @property
    def controller_host(self) -> str:
        return self.net.plan.controller_ip

    controller_port = CONTROLLER_PORT

    @property
    def where(self) -> str | None:
        if self.net is None:
            return None
        p = self.net.plan
        shaped = "shaped by the kernel (htb)" if self.runtime.pacing == "kernel" else "paced by the sending nodes"
        return (f"network namespaces {p.controller_ns} (controller, {p.controller_ip}) and "
                f"{p.node_ns(0)}..{p.node_ns(p.nodes - 1)} on bridge {p.bridge} ({p.subnet}, host side "
                f"{p.bridge_ip}); links {shaped}")

    async def start(self) -> None:
        # Blocking on purpose: nothing else runs yet, and every thread that later does I/O for
        # the controller must be started after the main thread has moved into its namespace.
        self.net = NetnsNetwork.create(self.network.n, self.subnet)
        if self.runtime.pacing == "kernel":
            self.net.shape(self.network.link_rate_Bps)
        self._netns.enter(self.net.plan.controller_ns)
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(thread_name_prefix="o2o-controller"))
        log.info("test network %s: bridge %s, controller %s", self.net.plan.subnet, self.net.plan.bridge,
                 self.net.plan.controller_ip)
        await super().start()

    def node_command(self, i: int) -> list[str]:
        plan = self.net.plan
        return ["ip", "netns", "exec", plan.node_ns(i), self.python, "-m", "o2o.testbed.node",
                "--controller", f"{plan.controller_ip}:{self.controller.port}", "--index", str(i),
                "--listen", f"{plan.node_ip(i)}:{NODE_PORT}", "--advertise", plan.node_ip(i),
                "--connect-wait", str(self.start_timeout_s), "--controller-grace", "2"]

    def _kill_node_processes(self, i: int, proc: subprocess.Popen) -> None:
        """Every process in node i's namespace gets SIGKILL (a crashed host)."""
        pids = self.net.node_pids(i) | {proc.pid}
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.killed.append({"node": i, "pid": proc.pid, "pids": sorted(pids)})

    async def stop(self, reason: str = "run finished") -> None:
        try:
            await super().stop(reason)
        finally:
            self._netns.leave()
            if self.net is not None:
                self.net.destroy()


class AttachedNodes:
    """Nodes that started on their own (other hosts, Kubernetes pods) and registered with
    ``controller``: the same ``run`` as ``LocalTestbed`` without process control."""

    def __init__(self, controller: Controller):
        self.controller = controller
        self.killed: list[dict] = []

    async def run(self, scheduler: str, seeds: list[int], first_index: int = 0, kills=(),
                  on_episode=None, params: dict[str, float] | None = None) -> list[EpisodeResult]:
        if kills:
            raise UserError("--kill-node needs the nodes to be started by `o2o testbed run`")
        results = []
        for k, seed in enumerate(seeds):
            await self.controller.prepare(scheduler, params=params)
            result = await self.controller.run_episode(first_index + k, seed, scheduler)
            results.append(result)
            if on_episode is not None:
                on_episode(result)
        return results
