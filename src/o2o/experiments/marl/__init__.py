"""External multi-agent RL baselines on o2o (the optional ``marl`` extra: TorchRL, BenchMARL).

``env``: a TorchRL environment backed by the batched engine (``o2o.sim.env.OffloadVecEnv``) and
the BenchMARL task built on it. ``train``: BenchMARL's MAPPO, IPPO, QMIX and MASAC trained with
O2O-DRL's online budget and evaluated on the held-out episodes of ``o2o run``.

Nothing here is imported by the rest of o2o except on demand (``o2o marl``, ``o2o run --marl``
reads only the results files), so the core install does not need TorchRL or BenchMARL.
"""
