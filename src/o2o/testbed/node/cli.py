"""The node program's command line: ``o2o testbed node`` and ``python -m o2o.testbed.node`` (the
latter without the rest of the CLI's imports; the launcher and the node image use it)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import socket
import sys

from o2o.core.errors import UserError
from o2o.testbed import wire
from o2o.testbed.node.edge import EdgeNode
from o2o.testbed.node.settings import NodeSettings


def index_from_hostname(hostname: str | None = None) -> int:
    """The node index of a Kubernetes StatefulSet pod: the ordinal after the last '-'."""
    name = hostname or socket.gethostname()
    tail = name.rsplit("-", 1)[-1]
    if not tail.isdigit():
        raise UserError(f"--index-from-hostname: host name {name!r} does not end in -ORDINAL")
    return int(tail)


def add_node_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--controller", required=True, metavar="HOST:PORT", help="the controller's address")
    p.add_argument("--index", type=int, default=None,
                   help="node index j (default: the controller assigns the lowest free one)")
    p.add_argument("--index-from-hostname", action="store_true",
                   help="take the index from the host name's -ORDINAL suffix (Kubernetes StatefulSet)")
    p.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="where peers reach this node (port 0: a free port; default 127.0.0.1:0)")
    p.add_argument("--advertise", default=None, metavar="HOST",
                   help="the address peers should use (default: the listen host, or this host's IP)")
    p.add_argument("--token-file", default=None, help=f"file with the shared token (default: ${wire.TOKEN_ENV})")
    p.add_argument("--connect-wait", type=float, default=30.0, metavar="SECONDS",
                   help="keep trying to reach the controller this long at start (default 30; 0: forever)")
    p.add_argument("--controller-grace", type=float, default=10.0, metavar="SECONDS",
                   help="after losing the controller, try to get it back this long (default 10)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="least severe log lines written to stderr (default INFO)")


def settings_from_args(args) -> NodeSettings:
    host, port = wire.parse_host_port(args.controller, "--controller")
    listen_host, listen_port = wire.parse_host_port(args.listen, "--listen")
    index = args.index
    if args.index_from_hostname:
        index = index_from_hostname()
    if index is not None and index < 0:
        raise UserError(f"--index must be >= 0, got {index}")
    for option, value in (("--connect-wait", args.connect_wait), ("--controller-grace", args.controller_grace)):
        if not (math.isfinite(value) and value >= 0):  # NaN fails every comparison
            raise UserError(f"{option} must be a finite number of seconds >= 0, got {value}")
    return NodeSettings(controller_host=host, controller_port=port,
                        key=wire.token_key(wire.read_token(args.token_file)), index=index,
                        listen_host=listen_host, listen_port=listen_port,
                        advertise_host=args.advertise, connect_wait_s=args.connect_wait,
                        controller_grace_s=args.controller_grace)


class NodeIndexFilter(logging.Filter):
    """Puts the node's index into every log line (``node[3]``), ``?`` until the controller
    has assigned one."""

    def __init__(self, node: EdgeNode):
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = "?" if self.node.index is None else self.node.index
        return True


def log_to_stderr(node: EdgeNode, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s node[%(node)s] %(levelname)s %(message)s"))
    handler.addFilter(NodeIndexFilter(node))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])


def run_node(args) -> int:
    node = EdgeNode(settings_from_args(args))
    log_to_stderr(node, args.log_level)
    try:
        return asyncio.run(node.run())
    except KeyboardInterrupt:
        return 130


class _Parser(argparse.ArgumentParser):
    """A usage error in one line, exit code 2, as ``o2o testbed node`` gives it."""

    def error(self, message: str):
        self.exit(2, f"o2o: error: {self.prog}: {message} (see '{self.prog} --help')\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m o2o.testbed.node``: the node program."""
    parser = _Parser(prog="o2o testbed node", description="run one edge node")
    add_node_args(parser)
    args = parser.parse_args(argv)
    try:
        return run_node(args)
    except UserError as exc:
        print(f"o2o: error: {exc}", file=sys.stderr)
        return 2
