"""Where the units of a sweep run: a local process pool (default) or a Ray cluster.

Both hand each unit to ``run_unit`` in another process and give the cells back to the sweep's
own process, which alone writes the results database. A unit's numbers depend only on the unit
(``o2o.experiments.cells``), so neither the executor nor the number of workers changes them.

``local``
    ``workers`` processes of this machine (default: one per core), one thread each; with one
    worker the units run in the sweep's own process. The workers die with the sweep's process.
``ray``
    each unit is a Ray task (one CPU) on the cluster at ``address``, or on a local cluster
    started for the run (``workers`` CPUs) and stopped at its end. Ray is an optional extra:
    ``pip install 'o2o[ray]'``. On a cluster of several machines, o2o must be installed on each
    (the same version), and the output folder is only written by the sweep's own process.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable, Iterator, Sequence

from o2o.core.errors import UserError


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None = None, initializer: Callable[[], None] | None = None):
        self.workers = max(1, workers or cpu_count())
        self.initializer = initializer

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """(index, fn(task)) for every task, in the order they finish."""
        if self.workers == 1 or len(tasks) <= 1:
            for i, task in enumerate(tasks):
                yield i, fn(task)
            return
        workers = min(self.workers, len(tasks))
        # The context manager terminates the workers when the sweep stops early (an error,
        # Ctrl-C): no unit goes on computing for nobody.
        with multiprocessing.Pool(workers, initializer=self.initializer) as pool:
            yield from pool.imap_unordered(_Indexed(fn), list(enumerate(tasks)), chunksize=1)

    def close(self) -> None:
        pass


class _Indexed:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, item):
        i, task = item
        return i, self.fn(task)


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray, an optional extra: "
                            "pip install 'o2o[ray]' (or use --executor local)") from None
        import logging

        self.ray = ray
        self.started_here = address is None
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                   "logging_level": logging.ERROR, "configure_logging": True}
        try:
            if address is None:
                self.workers = max(1, workers or cpu_count())
                ray.init(num_cpus=self.workers, object_store_memory=128 * 2**20,
                         runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}}, **options)
            else:
                ray.init(address=address, **options)
                cluster = int(ray.cluster_resources().get("CPU", 1))
                self.workers = max(1, min(workers or cluster, cluster))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot start or reach a Ray cluster"
                            f"{' at ' + address if address else ''}: {first}") from None

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """(index, fn(task)) as the tasks finish; at most ``workers`` in flight."""
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        pending = list(enumerate(tasks))[::-1]
        in_flight: dict[Any, int] = {}
        try:
            while pending or in_flight:
                while pending and len(in_flight) < self.workers:
                    i, task = pending.pop()
                    in_flight[remote.remote(task)] = i
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    i = in_flight.pop(ref)
                    yield i, ray.get(ref)
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()


def check_executor(name: str) -> None:
    """Refuse, before anything is written, an executor that cannot run here."""
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--executor ray needs Ray, an optional extra: "
                            "pip install 'o2o[ray]' (or use --executor local)") from None
    elif name != "local":
        raise UserError(f"unknown executor {name!r}; choose local or ray")


def make_executor(name: str, *, workers: int | None, address: str | None,
                  initializer: Callable[[], None] | None = None):
    if name == "local":
        if address:
            raise UserError("--address is for --executor ray")
        return LocalExecutor(workers, initializer)
    if name == "ray":
        return RayExecutor(address, workers)
    raise UserError(f"unknown executor {name!r}; choose local or ray")
