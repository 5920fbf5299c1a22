"""An edge node of the testbed (the Execution Layer of paper VI-A), one module per job:

``queues``     the execution queue and the send queues as plain state, with the drop and
               failure rules of ``o2o.core.outcomes`` at their heads (no I/O: unit-tested alone)
``receiving``  the receiving queues: what arrives on the peers' data links (no I/O either)
``links``      the data and probe connections to the peers
``session``    the controller session: registration, clock sync, heartbeats, models
``decide``     the batch-of-one ``NodeView`` from live state, real probes, the rule or drl actor
``compute``    real CPU work for the ``compute`` execution mode
``edge``       the asyncio node that wires them (server, executor, senders, slots)
``cli``        ``o2o testbed node`` / ``python -m o2o.testbed.node``
"""

from o2o.testbed.node.cli import (
           add_node_args,
           index_from_hostname,
           main,
           run_node,
           settings_from_args,
)
from o2o.testbed.node.edge import EdgeNode
from o2o.testbed.node.settings import NodeSettings

__all__ = ["EdgeNode", "NodeSettings", "add_node_args", "index_from_hostname", "main", "run_node",
           "settings_from_args"]
