"""Deploy without logs: fine-tune the generalist online on a network it never saw, against the
per-network O2O-DRL of the main job on the same network (issue: one scheduler for any network).

    PYTHONPATH=src python scripts/generalist_finetune.py MODEL_DIR [--network-seed 0] [--seeds 3]
        [--episodes 400] [--json OUT]

For each training seed k it loads the generalist (actor and pooled critic) at the network's N,
fine-tunes it with Algorithm 2 (project settings, PPO + GAE) on the online episodes of seed k,
the very episodes O2O-DRL's online phase used in ``o2o run`` (``o2o.core.seeds.online(k)``),
and records what the network's users got on each of them. On the same episodes it runs the
frozen generalist (its zero-shot level) and the main job's logging heuristic (``spread`` at its
default margins), and prints the cold-start numbers (``o2o.experiments.deployment``): start, dip,
regret in tasks against both, the first episode from which it stays above each. Then it
evaluates the fine-tuned models on the main job's 20 held-out episodes, paired with the
per-network O2O-DRL of ``docs/results/main-netS.json`` (offline on 300 logged episodes + the
same number of online episodes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.scenario import scenario_from_dict
from o2o.core.seeds import online as online_seeds
from o2o.experiments.deployment import deployment_numbers
from o2o.learn.online import train_online
from o2o.learn.policy import Policy
from o2o.learn.settings import learner_settings
from o2o.schedulers.drl import DRLRule
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

ROOT = Path(__file__).resolve().parents[1]


def counts(metrics: dict) -> tuple[list[int], list[int]]:
    return metrics["success"].astype(int).tolist(), metrics["tasks"].astype(int).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--network-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as o2o run's training workers
    results = json.loads((ROOT / f"docs/results/main-net{args.network_seed}.json").read_text())
    scenario = scenario_from_dict(results["scenario"])
    network = sample_network(scenario, args.network_seed)
    test = results["evaluation_seeds"]
    settings = learner_settings("project").online
    window = settings.episodes_per_batch
    zero_shot = DRLRule.from_model(args.model, scenario, network)
    out = {"model": args.model, "network_seed": args.network_seed, "episodes": args.episodes, "seeds": []}
    finetuned_rates = []
    for k in range(args.seeds):
        seeds = online_seeds(k).take(args.episodes)
        policy, _ = Policy.load(args.model, nodes=network.n, need_critic=True)
        start = time.perf_counter()
        result = train_online(scenario, network, policy, settings, episodes=args.episodes, seed=k,
                              show_progress=False, obs_layout=policy.obs_layout)
        seconds = time.perf_counter() - start
        assert result.episode_seeds == seeds
        frozen, tasks = counts(simulate(scenario, network, seeds, zero_shot))
        spread, _ = counts(simulate(scenario, network, seeds, make_scheduler("spread")))
        numbers = deployment_numbers(result.episode_success, result.episode_tasks,
                                     {"generalist (zero-shot)": frozen, "spread": spread}, window)
        with tempfile.TemporaryDirectory() as folder:
            result.policy.save(folder, training={"phase": "generalist fine-tuning", "seed": k},
                               nodes_range=(network.n, network.n))
            rates = simulate(scenario, network, test, DRLRule.from_model(folder, scenario, network))["success_rate"]
        finetuned_rates.append(rates)
        out["seeds"].append({"seed": k, "train_s": seconds, "deployment": numbers,
                             "zero_shot_on_online_episodes": float(np.sum(frozen) / np.sum(tasks)),
                             "held_out_success_rate": float(rates.mean())})
        print(f"seed {k}: {args.episodes} online episodes in {seconds:.0f} s; during deployment "
              f"{numbers['success_rate']:.4f} (zero-shot on the same episodes "
              f"{np.sum(frozen) / np.sum(tasks):.4f}, spread {np.sum(spread) / np.sum(tasks):.4f}); "
              f"start {numbers['start']:.4f}, lowest {numbers['lowest']:.4f} at episode "
              f"{numbers['lowest_episode']}, dip {numbers['dip']:+.4f}; regret (tasks) "
              f"{numbers['regret_tasks']}; above from {numbers['above_from_episode']}; "
              f"held-out {rates.mean():.4f}", flush=True)
    mean = np.mean(finetuned_rates, axis=0)
    drl = np.asarray(results["o2o-drl"]["per_episode"])
    general = simulate(scenario, network, test, zero_shot)["success_rate"]
    d, lo, hi = mean_ci95(mean - drl)
    d0, lo0, hi0 = mean_ci95(mean - general)
    print(f"held-out ({len(test)} episodes): generalist zero-shot {general.mean():.4f}; fine-tuned "
          f"{mean.mean():.4f} (mean of {args.seeds} seeds); per-network O2O-DRL {drl.mean():.4f}; "
          f"fine-tuned - O2O-DRL {d:+.4f} [{lo:+.4f}, {hi:+.4f}]; fine-tuned - zero-shot "
          f"{d0:+.4f} [{lo0:+.4f}, {hi0:+.4f}]")
    out.update({"held_out": {"zero_shot": float(general.mean()), "fine_tuned": float(mean.mean()),
                             "o2o_drl": float(drl.mean()), "fine_tuned_minus_o2o_drl": [d, lo, hi],
                             "fine_tuned_minus_zero_shot": [d0, lo0, hi0]},
                "o2o_drl_deployment": results.get("deployment")})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
