"""Screen learner settings on VALIDATION episodes against the tuned same-information rule.

One training seed of O2O-DRL (offline from a teacher's logs, then online fine-tuning) on one
network, its learning curve evaluated on ``--eval-episodes`` VALIDATION episodes starting at
``900000 + --eval-offset`` (default 100: disjoint from the 10 episodes ``o2o tune`` chose the
rule's values on and from the 5 learning-curve episodes of ``o2o run``), every point with the
paired difference to ``slack-reliable`` at its tuned values on the same episodes. Never
touches TEST episodes: settings are chosen here, reported by ``o2o run``.

    PYTHONPATH=src python scripts/learner_screen.py --network-seed 0 --seed 0 \\
        --tuned /tmp/tuned/slack-reliable-net0.json --teacher spread --online-episodes 800 \\
        [--set-online lr=1e-4 ...] [--set-offline ...] --out /tmp/screen/NAME.json

``--teacher slack-reliable-tuned`` logs the rule at its tuned values (the file's ``params``).
The teacher's data set is cached next to ``--out`` (by network, teacher and episodes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from o2o.core import seeds
from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.experiments.tuning import load_tuned
from o2o.learn.evaluate import as_numpy_actor, at_temperature, evaluate_policy
from o2o.learn.offline import train_offline
from o2o.learn.online import train_online
from o2o.learn.settings import learner_settings
from o2o.logs.collect import collect
from o2o.logs.dataset import build_dataset, load_dataset, save_dataset
from o2o.logs.store import LogStore
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--tuned", required=True, help="o2o tune file of slack-reliable for this network")
    p.add_argument("--teacher", default="spread", help="spread | slack-reliable | slack-reliable-tuned")
    p.add_argument("--log-episodes", type=int, default=300)
    p.add_argument("--offline-steps", type=int, default=None)
    p.add_argument("--online-episodes", type=int, default=400)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--eval-offset", type=int, default=100)
    p.add_argument("--reward-credit", default=None,
                   help="slot | decision | node | counterfactual[-w<w>] (default: the project's)")
    p.add_argument("--obs-layout", default=None, help="observation layout (default: the project's, o2o-obs-v2)")
    p.add_argument("--set-offline", action="append", default=[])
    p.add_argument("--set-online", action="append", default=[])
    p.add_argument("--temperatures", default="",
                   help="comma-separated policy temperatures to evaluate the final actor at "
                        "(logits / T; 1 is the actor as trained), e.g. 1,0.5,0.25")
    p.add_argument("--save-model", default=None, help="also save the final policy as a model folder here")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()

    scenario = load_scenario("paper-sim")
    network = sample_network(scenario, a.network_seed)
    tuned = load_tuned(a.tuned)
    if tuned["network_seed"] != a.network_seed or tuned["scheduler"] != "slack-reliable":
        sys.exit(f"{a.tuned} is not slack-reliable for network seed {a.network_seed}")
    settings = learner_settings("project", offline=a.set_offline, online=a.set_online,
                                reward_credit=a.reward_credit, obs_layout=a.obs_layout)
    val = seeds.VALIDATION.take(a.eval_episodes, a.eval_offset)
    rule = simulate(scenario, network, val, make_scheduler("slack-reliable", tuned["params"]))["success_rate"]

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    layout = "" if settings.obs_layout == "o2o-obs-v2" else f"-{settings.obs_layout}"
    data_path = out.parent / f"data-net{a.network_seed}-{a.teacher}-{a.log_episodes}-{settings.reward_credit}{layout}.npz"
    if not data_path.exists():
        name = "slack-reliable" if a.teacher.startswith("slack-reliable") else a.teacher
        params = tuned["params"] if a.teacher == "slack-reliable-tuned" else None
        # A scratch log of this process (two screens started at once on the same teacher each
        # log it; save_dataset renames the archive into place when whole).
        with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
            with LogStore.open(str(Path(scratch) / "logs.db"), create=True) as store:
                logged = collect(store, scenario, network, make_scheduler(name, params), name,
                                 seeds.LOGS.take(a.log_episodes), network_seed=a.network_seed)
                data = build_dataset(store, [logged.run_id], reward_credit=settings.reward_credit,
                                     obs_layout=settings.obs_layout)
        save_dataset(data, data_path)
        print(f"logged {a.teacher}: success {logged.success_rate:.4f}", flush=True)
    dataset = load_dataset(str(data_path))

    def point(actor) -> dict:
        rate = evaluate_policy(scenario, network, actor, val)["success_rate"]
        d, lo, hi = mean_ci95(rate - rule)
        return {"success_rate": float(rate.mean()), "diff": d, "diff_lo": lo, "diff_hi": hi,
                "per_episode": rate.tolist()}

    steps = a.offline_steps or settings.offline_steps
    offline = train_offline(dataset, settings.offline, seed=a.seed, steps=steps, show_progress=False)
    off = point(offline.policy.actor)
    print(f"offline: {off['success_rate']:.4f} diff {off['diff']:+.4f} [{off['diff_lo']:+.4f}, {off['diff_hi']:+.4f}]", flush=True)
    result = train_online(scenario, network, offline.policy, settings.online, episodes=a.online_episodes,
                          seed=a.seed, eval_every=a.eval_every, eval_fn=point, show_progress=False)
    for c in result.curve:
        print(f"online {c['episodes']:5d}: {c['success_rate']:.4f} diff {c['diff']:+.4f} "
              f"[{c['diff_lo']:+.4f}, {c['diff_hi']:+.4f}]", flush=True)
    temperatures = {}
    for t in [float(x) for x in a.temperatures.split(",") if x]:
        temperatures[str(t)] = point(at_temperature(as_numpy_actor(result.policy.actor), t))
        print(f"temperature {t:g}: {temperatures[str(t)]['success_rate']:.4f} diff "
              f"{temperatures[str(t)]['diff']:+.4f} [{temperatures[str(t)]['diff_lo']:+.4f}, "
              f"{temperatures[str(t)]['diff_hi']:+.4f}]", flush=True)
    if a.save_model:
        result.policy.save(a.save_model)
    report = {"args": vars(a), "rule_rate": float(rule.mean()), "rule_per_episode": rule.tolist(),
              "validation_seeds": val, "offline": off, "curve": result.curve, "temperatures": temperatures,
              "seconds": time.perf_counter() - started}
    out.write_text(json.dumps(report, indent=1, default=float))
    print(f"rule (slack-reliable tuned) {rule.mean():.4f}; {report['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
