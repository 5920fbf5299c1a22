"""The rule prior alone (a scorer whose MLP outputs 0) against ``slack-reliable`` at the same
tuned values, on the VALIDATION episodes of ``learner_screen.py`` (paired differences)."""

from __future__ import annotations

import argparse
import json
import time

from o2o.core import seeds
from o2o.core.decpomdp import obs_dim
from o2o.core.metrics import mean_ci95
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.experiments.tuning import load_tuned
from o2o.learn.evaluate import evaluate_policy
from o2o.learn.nets import Actor
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network-seeds", default="0,1,2")
    p.add_argument("--caps", default="10,20")
    p.add_argument("--gaps", default="none", help="comma-separated infeasible gaps (none: the hard barrier)")
    p.add_argument("--tuned", default="/tmp/tuned/slack-reliable-net{}.json")
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--eval-offset", type=int, default=100)
    a = p.parse_args()
    scenario = load_scenario("paper-sim")
    val = seeds.VALIDATION.take(a.eval_episodes, a.eval_offset)
    out = []
    for net in [int(x) for x in a.network_seeds.split(",")]:
        network = sample_network(scenario, net)
        params = load_tuned(a.tuned.format(net))["params"]
        rule = simulate(scenario, network, val, make_scheduler("slack-reliable", params))["success_rate"]
        values = (params["local_margin"], params["peer_margin"], params["rel_power"], params["slack_power"])
        for cap, gap in [(float(c), None if g == "none" else float(g))
                         for c in a.caps.split(",") for g in a.gaps.split(",")]:
            t0 = time.perf_counter()
            n = network.n
            actor = Actor(obs_dim(n, "o2o-obs-v2"), n + 1, (32, 32), head="scorer", rule_prior=(*values, cap, gap))
            rate = evaluate_policy(scenario, network, actor, val)["success_rate"]
            d, lo, hi = mean_ci95(rate - rule)
            row = {"network_seed": net, "params": params, "cap": cap, "gap": gap, "rule": float(rule.mean()),
                   "prior": float(rate.mean()), "diff": d, "diff_lo": lo, "diff_hi": hi}
            out.append(row)
            print(f"net {net} cap {cap:g} gap {gap}: rule {rule.mean():.4f} prior-only {rate.mean():.4f} "
                  f"diff {d:+.4f} [{lo:+.4f}, {hi:+.4f}] ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
