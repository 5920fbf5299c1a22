"""The ``o2o`` command line: ``o2o.cli.main`` assembles one thin module per command group."""
