"""Hosts of their own on one Linux machine: the controller and every node in a network namespace
of their own, attached to one Linux bridge, each directed link i -> j shaped by the kernel.

The paper's testbed runs each edge node as a Kubernetes pod with its own network (paper VI-A);
this is the closest a single machine without a container engine gets: separate network stacks
with their own addresses, the kernel's TCP and queueing on a rate-limited link between them, and
a bridge as the only way from one to another.

Layout of one run (``RUN`` is six random hex digits, every name starts with ``o2o-RUN-``)::

    host namespace:  bridge o2o-RUN-br, address .1 of the run's subnet (where a PostgreSQL
                     server of the host is reached: the task log's writes cross the bridge)
    o2o-RUN-c:       the controller, address .2          eth0 <-veth-> o2o-RUN-c  on the bridge
    o2o-RUN-nI:      node I, address .(10 + I)           eth0 <-veth-> o2o-RUN-nI on the bridge

The subnet is a private /24 (or the ``--subnet`` given) that overlaps no address and no route in
use on the machine. The namespaces have no default route: they reach the bridge's subnet and
nothing else.

**Shaping.** On node i's ``eth0`` an htb qdisc has one class per destination j at r_ij; a u32
filter puts into it the packets to j's address that carry the payload mark (DSCP CS1, IP TOS
0x20, set by the node on its payload connections). Everything else (the controller link, probes,
announcements, TCP acknowledgements) is unclassified and leaves unshaped, as the simulator
charges only the payload for the link (paper III-A, eq. 1). The class rate is r_ij times the
bytes on the wire per payload byte (Ethernet, IP and TCP headers of a full segment), so the
*payload* crosses at r_ij. Segmentation offload on ``eth0`` is capped at 16 KB, so that htb
meters the link in steps of at most 16 KB (1.6 ms at 10 MB/s) rather than 64 KB, without a timer
per 1500-byte frame; the socket buffers hold a whole payload.

**Teardown.** Before anything is created, a state file ``/run/o2o-testbed/RUN.json`` records the
owner (pid and its start time) and every name the run will create. ``destroy`` kills every
process left in the run's namespaces, deletes the namespaces (their veth pairs and qdiscs go
with them) and the bridge, and then the state file. A run whose owner was killed with SIGKILL
leaves its state file behind; the next run (``recover_stale``) finds it, sees that its owner is
gone, and removes what it lists. Only names recorded in a state file are ever removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from o2o.core.errors import UserError
from o2o.testbed.node.settings import PAYLOAD_TOS

log = logging.getLogger("o2o.testbed.netns")

STATE_DIR = Path("/run/o2o-testbed")
NETNS_DIR = Path("/run/netns")
PREFIX = "o2o-"
BRIDGE_HOST = 1            # .1: the bridge's address in the host namespace
CONTROLLER_HOST = 2        # .2: the controller's namespace
FIRST_NODE_HOST = 10       # .10 + i: node i
CONTROLLER_PORT = 7000
NODE_PORT = 7100
MTU = 1500
# Bytes on the wire per full TCP segment (Ethernet header, IPv4, TCP with timestamps) over the
# payload it carries: htb meters whole frames, the paper's r_ij is a payload rate.
_MSS = MTU - 20 - 32
WIRE_BYTES_PER_PAYLOAD_BYTE = (MTU + 14) / _MSS
GSO_MAX_BYTES = 16 * 1024
SOCKET_BUFFER = 4 * 1024 * 1024
PRIVATE_RANGES = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
CLONE_NEWNET = 0x40000000


# ------------------------------------------------------------------------------ checks
def require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("--hosts netns needs root (it creates network namespaces, a bridge and tc "
                        "qdiscs); run as root, or use --hosts local")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise UserError(f"--hosts netns needs iproute2's `{tool}` on PATH (Debian: apt-get install iproute2)")


def _run(args: list[str], check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    got = subprocess.run(args, capture_output=True, text=True, input=input)
    if check and got.returncode != 0:
        msg = (got.stderr or got.stdout).strip().splitlines()
        raise NetnsError(f"`{' '.join(args[:6])}{' ...' if len(args) > 6 else ''}` failed: "
                         f"{msg[-1] if msg else f'exit code {got.returncode}'}")
    return got


class NetnsError(UserError):
    """Setting up the namespaces failed (what was created is removed again)."""


# ------------------------------------------------------------------------------ the subnet
def networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host namespace has an address in or a route to (all routing
    tables, default routes excepted), from iproute2's JSON output."""
    used: set[ipaddress.IPv4Network] = set()
    addrs = json.loads(_run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    for link in addrs:
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                used.add(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    for r in routes:
        dst = r.get("dst", "default")
        if dst == "default":
            continue
        try:
            used.add(ipaddress.ip_network(dst, strict=False))
        except ValueError:
            continue
    return sorted(used, key=lambda n: (int(n.network_address), n.prefixlen))


def hosts_needed(nodes: int) -> int:
    return FIRST_NODE_HOST + nodes + 1     # the addresses up to the last node's, and broadcast


def choose_subnet(requested: str | None, nodes: int, in_use: list[ipaddress.IPv4Network],
                  rng: random.Random | None = None) -> ipaddress.IPv4Network:
    """The run's subnet: ``requested`` checked (private, large enough, overlapping nothing in
    use), or a random free private /24 (larger when the nodes do not fit)."""
    if requested is not None:
        try:
            net = ipaddress.ip_network(requested, strict=True)
        except ValueError as exc:
            raise UserError(f"--subnet {requested!r} is not an IPv4 network such as 10.213.7.0/24 ({exc})") from None
        if net.version != 4:
            raise UserError(f"--subnet {requested}: only IPv4 subnets are supported")
        if not any(net.subnet_of(p) for p in PRIVATE_RANGES):
            raise UserError(f"--subnet {requested} is not a private range (10/8, 172.16/12, 192.168/16)")
        if net.num_addresses < hosts_needed(nodes):
            raise UserError(f"--subnet {requested} has {net.num_addresses} addresses; {nodes} nodes need "
                            f"{hosts_needed(nodes)} (node i is .{FIRST_NODE_HOST}+i); use a larger one")
        clash = [u for u in in_use if u.overlaps(net)]
        if clash:
            raise UserError(f"--subnet {requested} overlaps {clash[0]}, which is in use on this machine; "
                            "choose another (or leave --subnet out to get a free one)")
        return net
    prefix = 24
    while 2 ** (32 - prefix) < hosts_needed(nodes):
        prefix -= 1
        if prefix < 16:
            raise UserError(f"{nodes} nodes do not fit a test subnet")
    rng = rng or random.Random()
    for base in PRIVATE_RANGES:
        count = 2 ** (prefix - base.prefixlen)
        for _ in range(256):
            k = rng.randrange(1, count - 1)
            net = ipaddress.ip_network((int(base.network_address) + k * 2 ** (32 - prefix), prefix))
            if not any(u.overlaps(net) for u in in_use):
                return net
    raise UserError("no free private subnet found for the test network; give one with --subnet")


def bridge_address(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    return subnet.network_address + BRIDGE_HOST


def check_db_on_bridge(db: str, subnet: str | None) -> None:
    """A database server must be reached over the bridge: its URL names the bridge's address
    (the host side of the test network), so the controller's writes cross the emulated network.
    A SQLite path is written by the launcher itself and needs nothing."""
    from o2o.logs.db import resolve_url, safe_url

    url = resolve_url(db)
    if url.get_backend_name() == "sqlite":
        return
    where = safe_url(url)
    if subnet is None:
        raise UserError(f"--db {where}: with --hosts netns the database server is reached over the test "
                        "bridge; give --subnet CIDR and use its first address (the bridge's) as the host "
                        "in the URL, with the server listening there")
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError:
        net = None
    try:
        host = ipaddress.ip_address(url.host or "")
    except ValueError:
        host = None
    if net is None or host != bridge_address(net):
        expect = bridge_address(net) if net is not None else "the first address of --subnet"
        raise UserError(f"--db {where}: the host must be the bridge's address {expect} (where the server "
                        f"listens), not {url.host!r}; the controller reaches nothing else")


# ------------------------------------------------------------------------------ the plan
@dataclass
class NetnsPlan:
    """The names and addresses of one run."""

    run_id: str
    subnet: ipaddress.IPv4Network
    nodes: int

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.run_id}-br"

    @property
    def controller_ns(self) -> str:
        return f"{PREFIX}{self.run_id}-c"

    def node_ns(self, i: int) -> str:
        return f"{PREFIX}{self.run_id}-n{i}"

    @property
    def namespaces(self) -> list[str]:
        return [self.controller_ns] + [self.node_ns(i) for i in range(self.nodes)]

    def address(self, host: int) -> str:
        return str(self.subnet.network_address + host)

    @property
    def bridge_ip(self) -> str:
        return self.address(BRIDGE_HOST)

    @property
    def controller_ip(self) -> str:
        return self.address(CONTROLLER_HOST)

    def node_ip(self, i: int) -> str:
        return self.address(FIRST_NODE_HOST + i)

    def ns_address(self, ns: str) -> str:
        return self.controller_ip if ns == self.controller_ns else self.node_ip(int(ns.rsplit("-n", 1)[1]))


def new_run_id() -> str:
    return os.urandom(3).hex()


# ------------------------------------------------------------------------------ state files
def _start_time(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (field 22 of /proc/PID/stat), None if gone:
    with the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@contextlib.contextmanager
def _state_lock() -> Iterator[None]:
    """One run at a time chooses a subnet, creates its bridge or removes a dead run's leftovers."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def state_files() -> list[dict]:
    out = []
    for path in sorted(STATE_DIR.glob("*.json")) if STATE_DIR.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        data["_path"] = str(path)
        out.append(data)
    return out


def owner_alive(state: dict) -> bool:
    return _start_time(int(state["pid"])) == state.get("pid_start")


def live_names() -> set[str]:
    """Names of namespaces and links that runs with a living owner hold."""
    names = set()
    for s in state_files():
        if owner_alive(s):
            names.update(s["namespaces"])
            names.update(s["links"])
    return names


def our_namespaces() -> set[str]:
    return {p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX)} if NETNS_DIR.is_dir() else set()


def our_links() -> set[str]:
    links = json.loads(_run(["ip", "-j", "link", "show"]).stdout or "[]")
    return {link["ifname"] for link in links if link.get("ifname", "").startswith(PREFIX)}


def leftovers() -> dict[str, set]:
    """Namespaces, links and processes named like a run's that no living run holds (what a run
    that ended should not leave behind)."""
    live = live_names()
    namespaces = our_namespaces() - live
    pids = set()
    for ns in namespaces:
        pids.update(namespace_pids(ns))
    return {"namespaces": namespaces, "links": our_links() - live, "processes": pids}


def namespace_pids(ns: str) -> set[int]:
    got = _run(["ip", "netns", "pids", ns], check=False)
    return {int(p) for p in got.stdout.split() if p.isdigit()} if got.returncode == 0 else set()


def _remove(namespaces: list[str], links: list[str]) -> list[str]:
    """Kill every process in ``namespaces``, delete ``links`` and the namespaces; what could
    not be removed. The veth pairs go first: a namespace whose name is gone lives on while a
    closed TCP connection in it still retransmits, and would keep its veth pair meanwhile."""
    problems = []
    present = [ns for ns in namespaces if (NETNS_DIR / ns).exists()]
    for ns in present:
        for _ in range(100):
            pids = namespace_pids(ns)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        else:
            problems.append(f"namespace {ns}: processes {sorted(namespace_pids(ns))} do not die")
    existing = our_links()
    for name in links:
        if name in existing:
            got = _run(["ip", "link", "delete", name], check=False)
            if got.returncode != 0 and name in our_links():
                problems.append(f"link {name}: {got.stderr.strip()}")
    for ns in present:
        got = _run(["ip", "netns", "delete", ns], check=False)
        if got.returncode != 0 and (NETNS_DIR / ns).exists():
            problems.append(f"namespace {ns}: {got.stderr.strip()}")
    return problems


def recover_stale() -> list[str]:
    """Remove what runs whose owner is gone left behind (a launcher killed with SIGKILL); the
    run ids cleaned up."""
    cleaned = []
    with _state_lock():
        for s in state_files():
            if owner_alive(s):
                continue
            problems = _remove(s["namespaces"], s["links"])
            if problems:
                log.error("could not remove what run %s left: %s", s["run_id"], "; ".join(problems))
                continue
            Path(s["_path"]).unlink(missing_ok=True)
            cleaned.append(s["run_id"])
            log.warning("removed what testbed run %s (pid %s, gone) left: %d namespaces, its bridge",
                        s["run_id"], s["pid"], len(s["namespaces"]))
    return cleaned


# ------------------------------------------------------------------------------ entering a namespace
_libc = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class ThreadNetns:
    """Moves the calling thread into a network namespace and back. Sockets keep the namespace
    they were created in, and threads started meanwhile inherit it (so do child processes)."""

    def __init__(self):
        self._home: int | None = None

    def enter(self, ns: str) -> None:
        if self._home is None:
            self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    def leave(self) -> None:
        if self._home is not None:
            try:
                _setns(self._home)
            finally:
                os.close(self._home)
                self._home = None


# ------------------------------------------------------------------------------ the network
@dataclass
class NetnsNetwork:
    """One run's namespaces and bridge (``create`` / ``destroy``) and its shaping (``shape``)."""

    plan: NetnsPlan
    created: bool = False
    _state_path: Path | None = field(default=None, repr=False)

    @classmethod
    def create(cls, nodes: int, subnet: str | None = None) -> "NetnsNetwork":
        """Choose a free subnet and create the bridge and the namespaces; on a failure what was
        created is removed and a NetnsError says what went wrong."""
        require_root()
        recover_stale()
        with _state_lock():
            in_use = networks_in_use()
            for s in state_files():       # a living run's subnet whose bridge is not up yet
                in_use.append(ipaddress.ip_network(s["subnet"]))
            net = choose_subnet(subnet, nodes, in_use)
            run_id = new_run_id()
            while any(n.startswith(f"{PREFIX}{run_id}-") for n in our_namespaces() | our_links()):
                run_id = new_run_id()
            self = cls(NetnsPlan(run_id, net, nodes))
            self._write_state()
            try:
                self._create_bridge()
            except BaseException:
                self.destroy()
                raise
        try:
            self._create_hosts()
        except BaseException:
            self.destroy()
            raise
        self.created = True
        return self

    def _write_state(self) -> None:
        p = self.plan
        state = {"run_id": p.run_id, "pid": os.getpid(), "pid_start": _start_time(os.getpid()),
                 "subnet": str(p.subnet), "namespaces": p.namespaces,
                 "links": p.namespaces + [p.bridge], "created_at": time.time()}
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        path = STATE_DIR / f"{p.run_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)
        self._state_path = path

    def _create_bridge(self) -> None:
        p = self.plan
        _run(["ip", "link", "add", p.bridge, "type", "bridge"])
        _disable_ipv6_here(p.bridge)
        _run(["ip", "addr", "add", f"{p.bridge_ip}/{p.subnet.prefixlen}", "dev", p.bridge])
        _run(["ip", "link", "set", p.bridge, "up"])

    def _create_hosts(self) -> None:
        p = self.plan
        for ns in p.namespaces:
            _run(["ip", "netns", "add", ns])
            # The host end keeps the namespace's name; the other end is eth0 inside it.
            _run(["ip", "link", "add", ns, "mtu", str(MTU), "type", "veth", "peer", "name", "eth0",
                  "netns", ns])
            _disable_ipv6_here(ns)
            _run(["ip", "link", "set", ns, "master", p.bridge, "up"])
            # Socket buffers that hold a whole payload: the sender hands it to the kernel at once
            # and the receiver's window never waits for a busy process to read (paper-testbed's
            # payloads are up to 2.5 MB); no slow start again after an idle link.
            buffers = f"4096 {SOCKET_BUFFER} {4 * SOCKET_BUFFER}"
            _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                  "net.ipv4.tcp_slow_start_after_idle=0", f"net.ipv4.tcp_wmem={buffers}",
                  f"net.ipv4.tcp_rmem={buffers}"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # htb releases a packet when its tokens allow: segmentation offload bursts of at most
            # GSO_MAX_BYTES keep that granular without a timer per 1500-byte frame.
            _run(["ip", "-n", ns, "link", "set", "eth0", "gso_max_size", str(GSO_MAX_BYTES),
                  "gso_max_segs", str(GSO_MAX_BYTES // _MSS + 1)])
            _run(["ip", "-n", ns, "addr", "add", f"{p.ns_address(ns)}/{p.subnet.prefixlen}", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    def shape(self, link_rate_Bps: np.ndarray) -> None:
        """On node i's interface, one htb class per destination j at r_ij for the packets of
        payload connections (TOS ``PAYLOAD_TOS``) to j's address."""
        p = self.plan
        n = link_rate_Bps.shape[0]
        for i in range(n):
            lines = ["qdisc add dev eth0 root handle 1: htb"]
            for j in range(n):
                if j == i:
                    continue
                bits = float(link_rate_Bps[i, j]) * 8 * WIRE_BYTES_PER_PAYLOAD_BYTE
                minor = f"{j + 16:x}"
                lines.append(f"class add dev eth0 parent 1: classid 1:{minor} htb rate {bits:.0f}bit "
                             f"ceil {bits:.0f}bit quantum {MTU + 14}")
                lines.append(f"filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst "
                             f"{p.node_ip(j)}/32 match ip tos {PAYLOAD_TOS:#x} 0xfc flowid 1:{minor}")
            _run(["tc", "-n", p.node_ns(i), "-batch", "-"], input="\n".join(lines) + "\n")

    def node_pids(self, i: int) -> set[int]:
        return namespace_pids(self.plan.node_ns(i))

    def destroy(self) -> None:
        """Remove every process, namespace and interface of the run, then its state file.
        SIGINT and SIGTERM wait until this is done."""
        p = self.plan
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            problems = _remove(p.namespaces, p.namespaces + [p.bridge])
            if problems:
                raise NetnsError(f"testbed run {p.run_id}: could not remove " + "; ".join(problems))
            if self._state_path is not None:
                self._state_path.unlink(missing_ok=True)
            self.created = False
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _disable_ipv6_here(ifname: str) -> None:
    """No IPv6 on the test interfaces: nothing but the test's IPv4 traffic on the bridge."""
    path = Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6")
    if path.exists():
        with contextlib.suppress(OSError):
            path.write_text("1")
