"""The ``o2o`` command line.

Each part of the system registers its own sub-commands (``register(subparsers)`` in its
``commands`` module); this file only assembles them and turns user errors into exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from o2o.errors import UserError

# Modules that add sub-commands; each has ``register(subparsers, bench)`` where ``bench`` holds
# the sub-commands of ``o2o bench``. A module that is not there yet is skipped.
COMMAND_MODULES = [
    "o2o.sim.commands",
    "o2o.logs.commands",
    "o2o.learn.commands",
    "o2o.pipeline_commands",
    "o2o.testbed.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="o2o",
        description="Decentralized task offloading in edge computing with offline-to-online DRL.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    bench_parser = sub.add_parser("bench", help="benchmarks that print measured figures")
    bench = bench_parser.add_subparsers(dest="bench", metavar="WHAT")
    bench.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub, bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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
