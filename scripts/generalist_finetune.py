"""Deploy without logs: fine-tune the generalist online on a network it never saw, against the
per-network O2O-DRL of the main job on the same network (issue: one scheduler for any network).

    PYTHONPATH=src python scripts/generalist_finetune.py MODEL_DIR [--network-seed 0] [--seeds 3]
        [--first-seed 0] [--episodes 400] [--set k=v ...] [--reward-credit decision]
        [--score validation|test] [--json OUT]

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

``--set k=v`` overrides the online settings (``o2o.learn.settings.OnlineSettings``, as
``o2o train online --set-hparam``), ``--reward-credit`` fine-tunes under another credit than the
model's (needs ``critic_warmup`` > 0). ``--score validation`` scores the fine-tuned models and the
frozen generalist on 20 VALIDATION episodes (900 100 .. 900 119, those of
``scripts/learner_screen.py``) instead of the held-out ones: the episodes settings are chosen on.
Besides the dip against the learner's own start, it prints the paired dip: the lowest 8-episode
window of (fine-tuned - frozen generalist) on the same online episodes, which the episodes'
own ups and downs do not move (the frozen generalist's own dip is printed as the noise level).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from o2o.cli.common import reward_credit_arg
from o2o.core.errors import UserError
from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.provenance import environment
from o2o.core.scenario import scenario_from_dict
from o2o.core.seeds import VALIDATION
from o2o.core.seeds import online as online_seeds
from o2o.experiments.deployment import deployment_numbers, dip, window_sums
from o2o.learn.online import train_online
from o2o.learn.policy import Policy
from o2o.learn.settings import learner_settings
from o2o.models import load_model
from o2o.schedulers.drl import DRLRule
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

ROOT = Path(__file__).resolve().parents[1]


def counts(metrics: dict) -> tuple[list[int], list[int]]:
    return metrics["success"].astype(int).tolist(), metrics["tasks"].astype(int).tolist()


def paired_dip(success: list[int], reference: list[int], tasks: list[int], window: int) -> dict:
    """The lowest ``window``-episode window of (learner - reference) successes over the window's
    tasks, its episode, and the first and last windows' differences."""
    diff = (window_sums(success, window) - window_sums(reference, window)) / window_sums(tasks, window)
    low = int(np.argmin(diff))
    return {"lowest": float(diff[low]), "lowest_episode": low + window, "first": float(diff[0]),
            "last": float(diff[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--network-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--first-seed", type=int, default=0, help="first training seed (default 0)")
    parser.add_argument("--set", dest="hparams", action="append", default=[], metavar="KEY=VALUE",
                        help="override an online hyper-parameter (repeatable)")
    parser.add_argument("--reward-credit", type=reward_credit_arg, default=None,
                        metavar="{slot,decision,node,counterfactual[-w<w>]}",
                        help="fine-tune under this credit (default the model's)")
    parser.add_argument("--score", choices=["test", "validation"], default="test",
                        help="score on the main job's held-out episodes (test) or on 20 VALIDATION "
                             "episodes (900100..900119), where settings are chosen")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as o2o run's training workers
    results = json.loads((ROOT / f"docs/results/main-net{args.network_seed}.json").read_text())
    scenario = scenario_from_dict(results["scenario"])
    network = sample_network(scenario, args.network_seed)
    validation = args.score == "validation"
    test = VALIDATION.take(20, 100) if validation else results["evaluation_seeds"]
    where = "validation" if validation else "held-out"
    try:
        settings = learner_settings("project", online=args.hparams, options=("--set", "--set")).online
    except UserError as err:
        parser.exit(2, f"error: {err}\n")
    # The window of the cold-start numbers: one batch D_k of the project's settings (8
    # episodes), as o2o run's, whatever --set episodes_per_batch says.
    window = learner_settings("project").online.episodes_per_batch
    model = load_model(args.model, nodes=network.n)   # loaded once: the frozen rule and the record
    zero_shot = DRLRule.from_model(model, scenario, network)
    out = {"model": args.model, "model_sha256": model.manifest["sha256"],
           "network_seed": args.network_seed, "episodes": args.episodes,
           "set": args.hparams, "reward_credit": args.reward_credit, "score": args.score,
           "episodes_scored": test, "environment": environment(), "seeds": []}
    finetuned_rates = []
    for k in range(args.first_seed, args.first_seed + args.seeds):
        seeds = online_seeds(k).take(args.episodes)
        policy, _ = Policy.load(args.model, nodes=network.n, need_critic=True)
        start = time.perf_counter()
        try:
            result = train_online(scenario, network, policy, settings, episodes=args.episodes, seed=k,
                                  show_progress=False, obs_layout=policy.obs_layout,
                                  reward_credit=args.reward_credit)
        except UserError as err:
            parser.exit(2, f"error: {err}\n")
        seconds = time.perf_counter() - start
        assert result.episode_seeds == seeds
        frozen, tasks = counts(simulate(scenario, network, seeds, zero_shot))
        spread, _ = counts(simulate(scenario, network, seeds, make_scheduler("spread")))
        numbers = deployment_numbers(result.episode_success, result.episode_tasks,
                                     {"generalist (zero-shot)": frozen, "spread": spread}, window)
        paired = paired_dip(result.episode_success, frozen, tasks, window)
        frozen_dip = dip(frozen, tasks, window)["dip"]
        with tempfile.TemporaryDirectory() as folder:
            result.policy.save(folder, training={"phase": "generalist fine-tuning", "seed": k},
                               nodes_range=(network.n, network.n))
            rates = simulate(scenario, network, test, DRLRule.from_model(folder, scenario, network))["success_rate"]
        finetuned_rates.append(rates)
        out["seeds"].append({"seed": k, "train_s": seconds, "deployment": numbers,
                             "zero_shot_on_online_episodes": float(np.sum(frozen) / np.sum(tasks)),
                             "paired_dip_vs_zero_shot": paired, "zero_shot_own_dip": frozen_dip,
                             f"{where.replace('-', '_')}_success_rate": float(rates.mean()),
                             "per_episode": rates.tolist(),
                             "online_counts": {"tasks": tasks, "fine_tuned": result.episode_success,
                                               "zero_shot": frozen, "spread": spread}})
        print(f"seed {k}: {args.episodes} online episodes in {seconds:.0f} s; during deployment "
              f"{numbers['success_rate']:.4f} (zero-shot on the same episodes "
              f"{np.sum(frozen) / np.sum(tasks):.4f}, spread {np.sum(spread) / np.sum(tasks):.4f}); "
              f"start {numbers['start']:.4f}, lowest {numbers['lowest']:.4f} at episode "
              f"{numbers['lowest_episode']}, dip {numbers['dip']:+.4f} (zero-shot's own {frozen_dip:+.4f}); "
              f"paired with zero-shot: lowest window {paired['lowest']:+.4f} at episode "
              f"{paired['lowest_episode']}, last {paired['last']:+.4f}; regret (tasks) "
              f"{numbers['regret_tasks']}; above from {numbers['above_from_episode']}; "
              f"{where} {rates.mean():.4f}", flush=True)
    mean = np.mean(finetuned_rates, axis=0)
    general = simulate(scenario, network, test, zero_shot)["success_rate"]
    d0, lo0, hi0 = mean_ci95(mean - general)
    block = {"zero_shot": float(general.mean()), "fine_tuned": float(mean.mean()),
             "fine_tuned_minus_zero_shot": [d0, lo0, hi0]}
    line = (f"{where} ({len(test)} episodes): generalist zero-shot {general.mean():.4f}; fine-tuned "
            f"{mean.mean():.4f} (mean of {args.seeds} seeds); fine-tuned - zero-shot "
            f"{d0:+.4f} [{lo0:+.4f}, {hi0:+.4f}]")
    if not validation:
        drl = np.asarray(results["o2o-drl"]["per_episode"])
        d, lo, hi = mean_ci95(mean - drl)
        block.update({"o2o_drl": float(drl.mean()), "fine_tuned_minus_o2o_drl": [d, lo, hi]})
        line += (f"; per-network O2O-DRL {drl.mean():.4f}; fine-tuned - O2O-DRL "
                 f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    print(line)
    out.update({where.replace("-", "_"): block, "o2o_drl_deployment": results.get("deployment")})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
