"""``--hosts netns``: the controller and the nodes in network namespaces of their own on one
bridge, the links shaped by the kernel.

The first tests need nothing (subnet choice, the database check, the refusals). The others need
root and network namespaces (CI runs as root) and skip elsewhere with the reason; they check what
the kernel does to the links (rates measured against r_ij), whole runs with the task log on a
PostgreSQL server reached over the bridge, a node's namespace killed mid-episode, and that every
namespace, interface, state file and process is gone after a normal end, Ctrl-C, SIGTERM, and
(at the next start) after the launcher itself was killed with SIGKILL.
"""

from __future__ import annotations

import glob
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from o2o.cli.main import main
from o2o.core.errors import UserError
from o2o.testbed import netns
from tests.testbed.test_cli import RUN_TAG, SMALL, node_pids, o2o

NET = ipaddress.ip_network


def _netns_works() -> str | None:
    """Why the namespace tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, a bridge, tc)"
    for tool in ("ip", "tc", "unshare"):
        if shutil.which(tool) is None:
            return f"needs {tool} on PATH"
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        return "cannot create network namespaces here"
    return None


WHY = _netns_works()
needs_netns = pytest.mark.skipif(WHY is not None, reason=f"--hosts netns {WHY}")
# One worker runs them all, one after the other: a run's start-up removes what dead runs left,
# so two of these tests at once would clean up each other's deliberately dead runs.
pytestmark = pytest.mark.xdist_group("netns")


# ------------------------------------------------------------------------------ without root
def test_a_free_subnet_avoids_every_network_in_use():
    in_use = [NET("10.0.0.0/9"), NET("192.0.2.0/24"), NET("172.16.5.0/24")]
    import random

    rng = random.Random(1)
    for _ in range(50):
        net = netns.choose_subnet(None, 10, in_use, rng)
        assert net.prefixlen == 24 and net.is_private
        assert not any(net.overlaps(u) for u in in_use)
        assert net.subnet_of(NET("10.0.0.0/8")) and not net.subnet_of(NET("10.0.0.0/9"))
    # Everything private in use: a clear refusal, not a clash.
    with pytest.raises(UserError, match="give one with --subnet"):
        netns.choose_subnet(None, 10, [NET("10.0.0.0/8"), NET("172.16.0.0/12"), NET("192.168.0.0/16")], rng)
    # 300 nodes do not fit a /24 (node i is .10+i): a larger block is chosen.
    assert netns.choose_subnet(None, 300, in_use, rng).prefixlen == 23


@pytest.mark.parametrize("subnet, message", [
    ("10.1.2.0/24", "overlaps 10.0.0.0/9"),
    ("10.200.0.3/24", "not an IPv4 network"),
    ("8.8.8.0/24", "not a private range"),
    ("10.200.0.0/29", "need 14"),
    ("fd00::/64", "only IPv4"),
])
def test_a_requested_subnet_is_checked(subnet, message):
    with pytest.raises(UserError, match=message):
        netns.choose_subnet(subnet, 3, [NET("10.0.0.0/9")])
    assert netns.choose_subnet("10.200.0.0/24", 3, [NET("10.0.0.0/9")]) == NET("10.200.0.0/24")


def test_a_database_server_must_be_on_the_bridge():
    netns.check_db_on_bridge("runs/x.db", None)                      # SQLite: written locally
    netns.check_db_on_bridge("postgresql+psycopg://o2o:pw@10.213.7.1:5432/o2o", "10.213.7.0/24")
    with pytest.raises(UserError, match="give --subnet"):
        netns.check_db_on_bridge("postgresql+psycopg://o2o:pw@10.213.7.1/o2o", None)
    with pytest.raises(UserError, match=r"bridge's address 10\.213\.7\.1.*not '127\.0\.0\.1'") as err:
        netns.check_db_on_bridge("postgresql+psycopg://o2o:secret@127.0.0.1/o2o", "10.213.7.0/24")
    assert "secret" not in str(err.value)
    with pytest.raises(UserError, match=r"bridge's address 10\.213\.7\.1 .*not 'db\.example'"):
        netns.check_db_on_bridge("postgresql://o2o@db.example/o2o", "10.213.7.0/24")


def test_the_shaper_charges_the_headers_of_full_segments():
    # htb meters frames; the paper's r_ij is a payload rate: 1514 bytes on the wire per 1448.
    assert netns.WIRE_BYTES_PER_PAYLOAD_BYTE == pytest.approx(1514 / 1448)


@pytest.mark.parametrize("args, message", [
    (["testbed", "run", "--pacing", "kernel"], "--pacing kernel needs --hosts netns"),
    (["bench", "testbed", "--pacing", "both"], "--pacing both needs --hosts netns"),
    (["testbed", "run", "--subnet", "10.9.9.0/24"], "--subnet is for --hosts netns"),
])
def test_netns_options_without_netns_are_refused(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_not_root_is_a_one_line_refusal(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["testbed", "run", "--hosts", "netns"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--hosts netns needs root" in err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ helpers (root)
def run_names(run_id: str) -> dict[str, set]:
    """What of run ``run_id`` exists: namespaces, links, its state file, processes inside."""
    prefix = f"{netns.PREFIX}{run_id}-"
    namespaces = {n for n in netns.our_namespaces() if n.startswith(prefix)}
    pids = set()
    for ns in namespaces:
        pids |= netns.namespace_pids(ns)
    return {"namespaces": namespaces, "links": {n for n in netns.our_links() if n.startswith(prefix)},
            "state": {p for p in glob.glob(str(netns.STATE_DIR / f"{run_id}.json"))}, "processes": pids}


def nothing_of(run_id: str) -> bool:
    return not any(run_names(run_id).values())


def run_id_of(stdout: str) -> str:
    found = re.search(r"bridge o2o-([0-9a-f]{6})-br", stdout)
    assert found, stdout
    return found.group(1)


def started_run(pid: int, nodes: int, timeout_s: float = 120) -> str:
    """The run id of the launcher ``pid`` once all its nodes are up in their namespaces."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for s in netns.state_files():
            if int(s["pid"]) == pid:
                names = run_names(s["run_id"])
                if len(names["processes"]) >= nodes:
                    return s["run_id"]
        time.sleep(0.2)
    raise AssertionError(f"launcher {pid} did not bring its {nodes} nodes up")


def launch(*args, tag: str) -> subprocess.Popen:
    env = dict(os.environ, **{RUN_TAG: tag})
    return subprocess.Popen([sys.executable, "-m", "o2o.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


# ------------------------------------------------------------------------------ the links (root)
SENDER = r"""
import socket, sys, time
dst, n, tos, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0), int(sys.argv[4])
c = socket.create_connection((dst, 7300))
c.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
buf = b"x" * n
for _ in range(count):
    time.sleep(0.05)
    t0 = time.monotonic()
    c.sendall(n.to_bytes(8, "big") + buf)
    c.recv(1)
    print(time.monotonic() - t0, flush=True)
"""
RECEIVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7300)); s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    while True:
        head = c.recv(8, socket.MSG_WAITALL)
        if len(head) < 8:
            break
        n, got = int.from_bytes(head, "big"), 0
        while got < n:
            got += len(c.recv(min(1 << 20, n - got)))
        c.sendall(b"k")
"""


@needs_netns
def test_the_kernel_shapes_each_link_to_its_rate_and_only_the_payload():
    rates = np.array([[0, 10e6, 20e6], [10e6, 0, 10e6], [10e6, 10e6, 0]])    # bytes/s
    net = netns.NetnsNetwork.create(3)
    plan = net.plan
    try:
        net.shape(rates)
        recv = [subprocess.Popen(["ip", "netns", "exec", plan.node_ns(j), sys.executable, "-c", RECEIVER,
                                  plan.node_ip(j)], stdout=subprocess.PIPE, text=True) for j in (1, 2)]
        for r in recv:
            assert r.stdout.readline().strip() == "ready"

        def transfer_s(j, tos, size=2_000_000, count=6):
            got = subprocess.run(["ip", "netns", "exec", plan.node_ns(0), sys.executable, "-c", SENDER,
                                  plan.node_ip(j), str(size), hex(tos), str(count)],
                                 capture_output=True, text=True, timeout=60, check=True)
            return np.array([float(x) for x in got.stdout.split()])

        def marked(j):
            # Six transfers, and six more (twice at most) while none came within +10% of the
            # rate: under the CPU load of the parallel tests every transfer of a round can be
            # slow (seen in CI: the fastest of six at 1.14); a wrong rate moves them all.
            rounds = [transfer_s(j, netns.PAYLOAD_TOS)]
            while min(r.min() for r in rounds) > 2_000_000 / rates[0, j] * 1.10 and len(rounds) < 3:
                rounds.append(transfer_s(j, netns.PAYLOAD_TOS))
            return np.concatenate(rounds) / (2_000_000 / rates[0, j])

        marked_1 = marked(1)   # 0.2 s nominal
        marked_2 = marked(2)   # 0.1 s nominal
        plain_1 = transfer_s(1, 0) / (2_000_000 / rates[0, 1])
    finally:
        for r in recv:
            r.kill()
            r.wait()
        net.destroy()
    # The payload crosses at r_ij: no transfer faster than the rate (-5%: the shaper's burst),
    # and the fastest within +10% of it. Time above that is the CPU time the parallel
    # tests take from sender and receiver on a 2-core machine (seen in CI: 1.1-1.5 times the
    # nominal time for the others), not the shaper's; a wrong rate moves the fastest too.
    for ratios in (marked_1, marked_2):
        assert ratios.min() >= 0.95 and ratios.min() <= 1.10, ratios
    # Unmarked traffic to the same address (probes, announcements, the controller) is not shaped.
    assert np.median(plain_1) < 0.34, plain_1
    assert nothing_of(plan.run_id)


# ------------------------------------------------------------------------------ whole runs (root)
POSTGRES_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
NETNS_POSTGRES = Path(__file__).resolve().parents[2] / "scripts" / "netns-postgres.sh"


@pytest.fixture
def bridge_postgres():
    """A throwaway PostgreSQL server (``scripts/netns-postgres.sh``) for one run on a subnet
    chosen here: its pg_hba admits the task log's role only from the controller's namespace
    address, so a run that completes wrote every row over the bridge. Local reads go through
    its Unix socket."""
    if not POSTGRES_BIN:
        pytest.skip("no PostgreSQL server binaries (scripts/start-postgres.sh installs them)")
    subnet = netns.choose_subnet(None, 3, netns.networks_in_use())
    got = subprocess.run(["bash", str(NETNS_POSTGRES), "start", str(subnet)], capture_output=True,
                         text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    out = dict(word.split("=", 1) for word in shlex.split(got.stdout))
    try:
        yield {"subnet": str(subnet), "url": out["DB_URL"], "local_url": out["LOCAL_URL"]}
    finally:
        subprocess.run(["bash", str(NETNS_POSTGRES), "stop", out["PGFOLDER"]], timeout=60)


@needs_netns
def test_a_run_on_postgres_over_the_bridge_survives_a_killed_node_namespace(bridge_postgres):
    """Node 1's namespace processes get SIGKILL at slot 4 of the first episode: the episode goes
    on, its tasks end as failures, the node comes back for the second episode, and every row is
    in the PostgreSQL log (which only the controller's namespace may write to)."""
    from o2o.core.outcomes import EXEC_FAIL, PENDING, SUCCESS
    from o2o.logs.store import LogStore

    tag = uuid.uuid4().hex
    got = o2o("testbed", "run", *SMALL, "--hosts", "netns", "--subnet", bridge_postgres["subnet"],
              "--db", bridge_postgres["url"], "--episodes", "2", "--kill-node", "1@4", tag=tag)
    assert got.returncode == 0, got.stderr[-3000:]
    assert "Traceback" not in got.stderr
    assert "node 1 lost at" in got.stdout and "links shaped by the kernel" in got.stdout
    run_id = run_id_of(got.stdout)
    assert nothing_of(run_id) and not node_pids(tag)
    with LogStore.open(bridge_postgres["local_url"]) as store:
        (info,) = store.runs()
        logs = [log for _, log in store.read_episodes(info.id)]
    assert info.status == "completed" and len(logs) == 2
    first, second = logs
    for log in logs:
        assert not (log.outcome == PENDING).any()
    # From the kill on, node 1's own tasks failed where they arrived; nothing sent to it succeeded.
    late = first.has_task[5:, 1]
    assert late.any() and (first.outcome[5:, 1][late] == EXEC_FAIL).all()
    towards_1 = first.has_task & (first.dest == 1) & (np.arange(first.slots)[:, None] >= 5)
    assert not (first.outcome[towards_1] == SUCCESS).any()
    # The restarted node took part in the second episode.
    assert (second.outcome[:, 1][second.has_task[:, 1]] == SUCCESS).any()


@needs_netns
def test_compare_runs_the_same_episodes_in_namespaces(tmp_path):
    tag = uuid.uuid4().hex
    got = o2o("testbed", "compare", *SMALL, "--hosts", "netns", "--episodes", "2",
              "--db", str(tmp_path / "c.db"), "--json", tag=tag)
    assert got.returncode == 0, got.stderr[-3000:]
    out = json.loads(got.stdout)
    assert out["hosts"] == "netns" and out["pacing"] == "kernel"
    assert [e["seed"] for e in out["episodes"]] == [0, 1]
    assert abs(out["difference"]) <= 0.1 and out["same_destination"] >= 0.8
    assert not node_pids(tag)
    assert_no_leftover_processes()


def assert_no_leftover_processes(grace_s: float = 2.0) -> None:
    """No process in a namespace of a run that ended. Twice in CI, under the full parallel suite,
    three were listed right after a run that had ended cleanly and were gone a moment later
    (the cause is not found): they get ``grace_s`` to go, and a failure says what they are."""
    deadline = time.monotonic() + grace_s
    while (left := netns.leftovers())["processes"] and time.monotonic() < deadline:
        time.sleep(0.1)
    if left["processes"]:
        described = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                     if Path(f"/proc/{pid}/cmdline").exists() else "(gone)" for pid in left["processes"]}
        raise AssertionError(f"left behind: {left}; processes {described}; state files {netns.state_files()}")


@needs_netns
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_leaves_nothing(sig, tmp_path):
    tag = uuid.uuid4().hex
    proc = launch("testbed", "run", *SMALL, "--hosts", "netns", "--episodes", "200",
                  "--db", str(tmp_path / "i.db"), "--log-dir", str(tmp_path / "logs"), tag=tag)
    try:
        run_id = started_run(proc.pid, 3)
        time.sleep(1.0)                       # into the episodes
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert nothing_of(run_id), run_names(run_id)
    assert not node_pids(tag)


@needs_netns
def test_after_the_launcher_is_killed_the_next_start_removes_what_it_left(tmp_path):
    tag = uuid.uuid4().hex
    proc = launch("testbed", "run", *SMALL, "--hosts", "netns", "--episodes", "200",
                  "--db", str(tmp_path / "k.db"), "--log-dir", str(tmp_path / "logs"), tag=tag)
    try:
        run_id = started_run(proc.pid, 3)
    finally:
        proc.kill()                            # SIGKILL: no clean-up of its own
        proc.communicate()
    left = run_names(run_id)
    assert left["namespaces"] and left["links"] and left["state"]
    # The next run, of anybody, first removes what the dead one left (a run of a test in another
    # pytest worker may come first: then that one does it, and says so on its stderr).
    got = o2o("testbed", "run", *SMALL, "--hosts", "netns", "--episodes", "1", "--verbose",
              "--db", str(tmp_path / "next.db"), tag=tag)
    assert got.returncode == 0, got.stderr[-3000:]
    assert nothing_of(run_id) and nothing_of(run_id_of(got.stdout))
    assert not node_pids(tag)


@needs_netns
@needs_netns
def test_recovery_removes_exactly_what_a_dead_owners_state_file_lists():
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()                                # a pid that no longer runs
    run_id = netns.new_run_id()
    mine, other = f"{netns.PREFIX}{run_id}-n0", f"{netns.PREFIX}{run_id}-n1"
    for ns in (mine, other):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", mine, "sleep", "600"])
    try:
        deadline = time.monotonic() + 10   # until the sleeper is inside the namespace
        while not subprocess.run(["ip", "netns", "pids", mine], capture_output=True, text=True).stdout.strip():
            assert time.monotonic() < deadline, "the process never entered its namespace"
            time.sleep(0.02)
        (netns.STATE_DIR / f"{run_id}.json").write_text(json.dumps(
            {"run_id": run_id, "pid": dead.pid, "pid_start": "0", "subnet": "10.255.255.0/24",
             "namespaces": [mine], "links": [f"{netns.PREFIX}{run_id}-br"]}))
        assert run_id in netns.recover_stale()
        assert sleeper.wait(10) == -signal.SIGKILL          # the process inside was killed
        assert mine not in netns.our_namespaces()
        assert other in netns.our_namespaces()               # not listed: not touched
        assert not (netns.STATE_DIR / f"{run_id}.json").exists()
    finally:
        sleeper.kill()
        for ns in (mine, other):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        (netns.STATE_DIR / f"{run_id}.json").unlink(missing_ok=True)


@needs_netns
@pytest.mark.parametrize("extra, message", [
    (["--subnet", "{free_small}"], "use a larger one"),
    (["--db", "postgresql+psycopg://o2o:o2o@127.0.0.1:5432/o2o"], "give --subnet"),
    (["--subnet", "{free}", "--db", "postgresql+psycopg://o2o:o2o@127.0.0.1:5432/o2o"], "bridge's address"),
    # On the bridge's address, but no server listens there: found once the network is up.
    (["--subnet", "{free}", "--db", "postgresql+psycopg://o2o:o2o@{bridge}:5432/o2o"],
     "must accept connections on the bridge address from the controller's"),
])
def test_bad_input_is_a_one_line_error_and_leaves_nothing(extra, message, tmp_path):
    used = netns.networks_in_use()
    free = netns.choose_subnet(None, 3, used)
    free_small = ipaddress.ip_network((free.network_address, 29))
    extra = [a.format(free=free, free_small=free_small, bridge=netns.bridge_address(free)) for a in extra]
    tag = uuid.uuid4().hex
    before = netns.our_namespaces() | netns.our_links()
    got = o2o("testbed", "run", *SMALL, "--hosts", "netns", "--db", str(tmp_path / "b.db"), *extra,
              "--log-dir", str(tmp_path / "logs"), tag=tag)
    assert got.returncode == 2 and message in got.stderr, got.stderr
    assert got.stderr.strip().count("\n") == 0 and "Traceback" not in got.stderr
    assert not _left_behind(before)
    assert not node_pids(tag)


def _left_behind(before: set[str], wait_s: float = 10.0) -> list[str]:
    """Namespaces and links that appeared since ``before`` and that no living run holds. Another
    run on this machine (another test session) may be tearing its own down just now: what it
    held is gone within seconds, what a refusal left behind stays."""
    deadline = time.monotonic() + wait_s
    while True:
        new = (netns.our_namespaces() | netns.our_links()) - before
        left = sorted(n for n in new if n not in netns.live_names())
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_the_bench_puts_kernel_and_user_pacing_side_by_side():
    from types import SimpleNamespace

    from o2o.testbed.analysis import bench_summary, pacing_comparison_lines

    def result(ratios):
        # (s bytes, r_ij bytes/s, seconds): 1 MB at 10 MB/s takes 0.1 s nominally.
        return SimpleNamespace(clock_lateness_s=[0.001, 0.002], delivery_lateness_s=[0.003],
                               decision_latency_s=[0.01], transfers=[(1e6, 1e7, 0.1 * x) for x in ratios],
                               sent=[(1e6, 1e7, 0.1 * x) for x in ratios])

    kernel = bench_summary([result([1.0, 1.02, 1.04, 1.30])], 0.97)
    user = bench_summary([result([1.01, 1.01, 1.02, 1.05])], 0.96)
    lines = pacing_comparison_lines(kernel, user)
    table = {line.split()[0]: line.split()[1:] for line in lines[2:7]}
    assert table["median"] == ["1.030", "1.015"]
    assert table["max"] == ["1.300", "1.050"]
    assert lines[6].split()[-2:] == ["75.0%", "100.0%"]
    assert lines[-1] == "slot clock lateness p99: 2.00 ms (kernel run), 2.00 ms (user run)"
