"""The ``o2o`` command line (``o2o.cli.main``); one thin module per command group."""

from o2o.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
