"""Offline gradient steps per CPU second of the project's first version (commit 33ed739), the
reference of the learner's speed figures in docs/learner.md. Its modules had other names, so it
runs from a checkout of that commit:

    git worktree add ../o2o-first 33ed739
    cd ../o2o-first && PYTHONPATH=src ../o2o/.venv/bin/python ../o2o/scripts/offline_speed_first_version.py

Paper Algorithm 1 (discrete SAC + CQL + V) at batch 512 on one torch thread, on 10 RATC
episodes of paper-sim, network seed 0: the best of 3 timings of 300 steps after a warm-up, as
``o2o bench learn`` measures the current code.
"""

import time

import torch

from o2o.config import load_scenario
from o2o.learn.data import rollout_dataset
from o2o.learn.offline import train_offline
from o2o.learn.settings import OfflineSettings
from o2o.network import sample_network
from o2o.schedulers import make_scheduler

torch.set_num_threads(1)
scenario = load_scenario("paper-sim")
network = sample_network(scenario, 0)
data = rollout_dataset(scenario, network, make_scheduler("ratc"), range(10), reward_credit="slot")
settings = OfflineSettings(batch_size=512)
train_offline(data, settings, steps=10, show_progress=False)
best = float("inf")
for _ in range(3):
    start = time.process_time()
    train_offline(data, settings, steps=300, show_progress=False)
    best = min(best, time.process_time() - start)
print(f"first version, Algorithm 1, batch 512: {300 / best:.1f} offline gradient steps per CPU second")
