"""The testbed of SPEC section 7 (paper VI): real edge-node processes exchanging task payloads
over TCP, a controller with the slot clock and the task log, a trainer, and a launcher that
brings N nodes up on one machine.

Modules, one job each:

``wire``        frames (length-prefixed, size-limited, HMAC-authenticated) and message schemas
``timing``      the shared controller clock, absolute-deadline sleeps, percentiles
``node``        an edge node: execution queue, send queues, probes, the scheduler rule
``recorder``    the controller's task table for one episode, turned into an ``EpisodeLog``
``controller``  registry and heartbeats, configuration, slot clock, episodes, model announcements
``trainer``     transitions from the testbed's logs -> training -> the model store
``launcher``    a whole testbed on loopback: controller in-process, N node processes
``commands``    ``o2o testbed ...`` and ``o2o bench testbed``

See ``docs/testbed.md`` for the architecture (processes, messages, clocks) and measured figures.
"""
