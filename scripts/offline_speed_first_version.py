"""The learner's throughput in the project's first version (commit 33ed739), measured as ``o2o
bench learn`` measures the current code: the reference of the speed figures in docs/learner.md. Its modules had other names, so it
runs from a checkout of that commit:

    git worktree add ../o2o-first 33ed739
    cd ../o2o-first && PYTHONPATH=src ../o2o/.venv/bin/python ../o2o/scripts/offline_speed_first_version.py

Per CPU second, one torch thread, paper-sim, network seed 0, the best of several timings (3 for
the learner, 7 for the env, as `o2o bench learn` takes them) after
a warm-up: offline gradient steps of Algorithm 1 (discrete SAC + CQL + V) at batch 512 on 10
RATC episodes (300 steps); online episodes of Algorithm 2 (2 batches of collection + update,
and collection alone); node-slots of the vector env stepped with uniform valid actions, one
episode at a time and 64 at a time.
"""

import time

import numpy as np
import torch
from o2o.config import load_scenario
from o2o.learn.data import rollout_dataset
from o2o.network import sample_network

from o2o.learn.offline import train_offline
from o2o.learn.online import OnlinePPO
from o2o.learn.settings import OfflineSettings
from o2o.schedulers import make_scheduler
from o2o.sim.env import OffloadVecEnv

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


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


algo = OnlinePPO(scenario, network, seed=0)
per = algo.s.episodes_per_batch
seeds = list(range(3_000_000, 3_000_000 + per))
algo.update(algo.collect(seeds)[0])
iteration = 2 * per / best_of(lambda: [algo.update(algo.collect(seeds)[0]) for _ in range(2)], 2)
collect = 2 * per / best_of(lambda: [algo.collect(seeds) for _ in range(2)], 2)
print(f"first version, online episodes/s: {iteration:.2f} (collection alone {collect:.2f})")

rng = np.random.default_rng(0)
for batch in (1, 64):
    env = OffloadVecEnv(scenario, network)
    episodes = max(1, 8 // batch)

    def run():
        for k in range(episodes):
            _, mask = env.reset(list(range(k * batch, (k + 1) * batch)))
            done = np.zeros(batch, bool)
            while not done.all():
                cdf = np.cumsum(mask / mask.sum(-1, keepdims=True), axis=-1)
                actions = np.minimum((rng.random(mask.shape[:2] + (1,)) >= cdf).sum(-1), network.n)
                _, mask, _, done, _ = env.step(actions)

    run()
    rate = episodes * batch * scenario.slots * network.n / best_of(run, 7)
    print(f"first version, env node-slots/s, batch {batch}: {rate:,.0f}")
