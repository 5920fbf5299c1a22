"""A process that runs ``o2o`` commands for the generative bad-input suite, each in a child
forked from it, under a memory cap and a time limit.

It imports o2o's commands (and PyTorch) once, then for each request (one JSON line on stdin:
``argv``, ``cwd``, ``tmp``, ``timeout_s``) forks a child that caps its address space
(``RLIMIT_AS``: what the zygote maps now plus ``O2O_FUZZ_HEADROOM_MB``, default 3072), sends
its stderr to a file, runs ``o2o.cli.main.main(argv)`` and exits with its code (70 for an
exception that escaped: a traceback). The zygote answers one JSON line: ``code`` (or
``signal``, or ``timed_out``) and ``stderr``. A regression that allocates without bound then
fails one example (MemoryError, or killed) instead of taking the host, and one that hangs is
killed after ``timeout_s``. The zygote has no threads when it forks, so a child is safe to run.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback


def _mapped_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(request: dict, err_path: str, cap: int) -> None:
    code = 70
    try:
        os.chdir(request["cwd"])
        tempfile.tempdir = request["tmp"]
        os.environ["TMPDIR"] = request["tmp"]
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(err, 2)
        os.dup2(devnull, 1)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from o2o.cli.main import main

        code = int(main(request["argv"]) or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a traceback is what the suite looks for
        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


def _wait(pid: int, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return {"signal": os.WTERMSIG(status)}
            return {"code": os.WEXITSTATUS(status)}
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"timed_out": True}
        time.sleep(0.005)


def serve() -> None:
    import torch  # noqa: F401 - loaded once here, not in every child

    import o2o.experiments.sweep_job  # noqa: F401
    import o2o.learn.offline  # noqa: F401
    import o2o.learn.online  # noqa: F401
    from o2o.cli.main import build_parser
    from o2o.sim.kernel import warm_up

    build_parser()
    warm_up()
    headroom = int(os.environ.get("O2O_FUZZ_HEADROOM_MB", "3072")) * 2**20
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        err_path = os.path.join(request["tmp_err"], "stderr.txt")
        cap = _mapped_bytes() + headroom
        pid = os.fork()
        if pid == 0:
            _child(request, err_path, cap)
        answer = _wait(pid, float(request.get("timeout_s", 60)))
        try:
            with open(err_path, encoding="utf-8", errors="replace") as fh:
                answer["stderr"] = fh.read()[-20_000:]
            os.unlink(err_path)
        except OSError:
            answer["stderr"] = ""
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    serve()
