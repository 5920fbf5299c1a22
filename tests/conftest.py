"""Shared by every test process."""

from o2o.sim.kernel import warm_up

# The simulator's compiled loops are built once here, in each test process, before any test
# times itself or starts a command-line subprocess (which then loads numba's cache): in a fresh
# checkout the first build takes about 20 s.
warm_up()
