"""The testbed (paper VI): real edge-node processes exchanging task payloads over TCP, a
controller with the slot clock and the task log, and a launcher that brings N nodes up on one
machine. The trainer that learns from the testbed's logs is ``o2o.learn.from_logs``.

Modules, one job each:

``wire``        frames (length-prefixed, size-limited, HMAC-authenticated), the handshake, the
                token, and the message schemas
``timing``      the shared controller clock, absolute-deadline sleeps, percentiles
``node``        an edge node: its queues and their rules (no I/O), links, controller session,
                decisions, and the asyncio process that wires them
``recorder``    the controller's task table for one episode, turned into an ``EpisodeLog``
``controller``  registry and heartbeats, configuration, slot clock, episodes, model announcements
``launcher``    a whole testbed on loopback: controller in-process, N node processes
``phase``       one phase (a scheduler over episode seeds) on a started testbed, its task log
``analysis``    sim vs testbed comparison, slot-clock and transfer-time measurements

The commands (``o2o testbed ...``, ``o2o bench testbed``) are ``o2o.cli.testbed``. See
``docs/testbed.md`` for the architecture (processes, messages, clocks) and measured figures.
"""
