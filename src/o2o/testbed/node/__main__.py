"""``python -m o2o.testbed.node``: run one edge node (the launcher and the node image use this)."""

import sys

from o2o.testbed.node.cli import main

sys.exit(main())
