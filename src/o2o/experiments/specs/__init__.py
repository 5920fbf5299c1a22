"""The sweep specs of the paper's figures, shipped with the package (``NAME.yaml``): Fig. 4
(V-D), Fig. 5a-c (V-E to V-G), Fig. 6 (V-H) in the simulator and Fig. 8 (VI-C) on the testbed.
The format is described in ``o2o.experiments.sweeps``."""

FIGURES = ("fig4", "fig5a", "fig5b", "fig5c", "fig6", "fig8")
PLAN_NAMES = ("quick", "full")
