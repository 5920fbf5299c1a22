"""The ``o2o`` command line: assembles the command groups (one module each in ``o2o.cli``) and
turns user errors into exit code 2 and interrupts into 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from o2o import __version__
from o2o.core.errors import UserError

# Command groups; each has ``register(subparsers, bench)`` where ``bench`` holds the
# sub-commands of ``o2o bench``.
COMMAND_MODULES = [
    "o2o.cli.simulate",
    "o2o.cli.logs",
    "o2o.cli.learn",
    "o2o.cli.run",
    "o2o.cli.tune",
    "o2o.cli.testbed",
    "o2o.cli.figure",
    "o2o.cli.marl",
]


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit code 2) that names the command and its help."""

    def error(self, message: str):
        self.exit(2, f"o2o: error: {self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="o2o",
        description="Decentralized task offloading in edge computing with offline-to-online DRL.",
    )
    parser.add_argument("--version", action="version", version=f"o2o {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    bench_parser = sub.add_parser("bench", help="benchmarks that print measured figures")
    bench = bench_parser.add_subparsers(dest="bench", metavar="WHAT")
    bench.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        # Building the parser imports every command group (a second or more): Ctrl-C may come
        # in the middle, and is an interrupt like any other.
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a one-line usage error (code 2)
            return int(exc.code or 0)
        result = args.func(args)
    except UserError as exc:
        print(f"o2o: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("o2o: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
