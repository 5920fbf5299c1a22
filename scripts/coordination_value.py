"""What is `central-earliest`'s lead over the tuned same-information rule made of? The greedy
earliest-finish rule of ``o2o.sim.central`` with information taken away one piece at a time
(``GreedyCentral(sees_slot=..., sees_wire=...)``), on the held-out episodes of the main job:

* ``central-earliest``: every queue, every task on the wire, and the placements made before it
  in the same slot;
* ``placed alone``: the same, but each task of a slot is placed from the state before the slot,
  as if it were the slot's only one (a node does not know what its peers send at the same time);
* ``alone, own sends``: also blind to the tasks its peers have on the wire (a node knows its own
  sends only). It still knows more than a probing node: exact queue finish times, with the
  failure clocks of the queued tasks.

Then the same question for a decentralized rule: ``InformedSlackReliable``, ``slack-reliable``'s
draw over the exact completion times of the greedy (more than a probing node can know), placed
alone, with and without its peers' tasks on the wire, and (for scale) seeing its slot. Each is
tuned as ``o2o tune`` tunes the rule: the grid of ``o2o.experiments.tuning.GRIDS`` (or, with
``--grid wide``, the wide grid of ``scripts/wider_rule_grid.py``) on the same 10 validation
episodes, the best mean success rate.

Last, coordination without information: the rule itself with its draws stratified across the
nodes of a slot (``stratified``: node i's uniform is (U_t + π_t(i) / N) mod 1, U_t and the
permutation π_t shared by every node of slot t, as a common random seed would give them; each
node's own draw is as before, the draws of a slot are spread over the nodes), tuned on the grid
under those draws.

Each is paired per episode with the tuned same-information rule ``slack-reliable`` on the wide
grid and with the best learner found (both from
``docs/results/variants/counterfactual-wide-teacher-8k-netK.json``, the rule's values chosen on
validation episodes), and with the rule on the shipped grid and the default learner
(``docs/results/main-netK.json``; network 3: ``variants/project-net3.json``).

    PYTHONPATH=src python scripts/coordination_value.py [NETWORK_SEED ...] [--grid shipped|wide] [--markdown]

(network seeds 0 1 2 3 by default; the shipped grid: about 5 min per network on 2 busy cores, the wide grid
three times that).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from wider_rule_grid import ci   # this folder is on the path of a script run

from o2o.core.episodes import Episodes, sample_episodes
from o2o.core.network import sample_network
from o2o.core.scenario import scenario_from_dict
from o2o.experiments.tuning import DEFAULT_EPISODES, GRIDS, WIDE_GRIDS, candidates, validation_seeds
from o2o.sim.central import GreedyCentral, InformedSlackReliable
from o2o.schedulers import make_rule
from o2o.sim.rollout import rollout, simulate

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"central-earliest": {}, "placed alone": {"sees_slot": False},
            "alone, own sends": {"sees_slot": False, "sees_wire": False}}
INFORMED = {"informed rule, alone": {"sees_slot": False},
            "informed rule, alone, own sends": {"sees_slot": False, "sees_wire": False},
            "informed rule, sees its slot": {"sees_slot": True}}
CHOICES = {"shipped": GRIDS["slack-reliable"], "wide": WIDE_GRIDS["slack-reliable"]}   # --grid
STRATIFIED = "rule, stratified draws"
CANDIDATES_PER_BATCH = 48
STRATIFY_SEED = 12345


def per_episode(results: dict, method: str) -> np.ndarray:
    return np.asarray(results[method]["per_episode"], dtype=np.float64)


def stratified(episodes: Episodes, seed: int = STRATIFY_SEED) -> Episodes:
    """The episodes with the rule's uniforms (``sched_u[..., 0]``) stratified across the nodes of
    every slot: (U_t + π_t(i) / N) mod 1, U_t and π_t drawn once per slot from ``seed``."""
    u = episodes.sched_u.copy()
    B, T, N, _ = u.shape
    rng = np.random.default_rng(seed)
    shift = rng.random((B, T, 1))
    rank = np.argsort(rng.random((B, T, N)), axis=-1)
    u[..., 0] = (shift + rank / N) % 1.0
    return dataclasses.replace(episodes, sched_u=u)


def best_candidate(cands: list[dict], scores: list[float]) -> tuple[dict, float]:
    """The candidate of the highest mean success rate, the first of equals (as ``o2o tune``)."""
    best = max(range(len(scores)), key=lambda c: (scores[c], -c))
    return cands[best], scores[best]


def tune_stratified(scenario, network, tuning: Episodes, grid: dict) -> tuple[dict, float]:
    """The grid's best ``slack-reliable`` parameters under stratified draws of ``tuning``."""
    cands = candidates("slack-reliable", None, grid)
    episodes = stratified(tuning)
    return best_candidate(cands, [float(np.mean(rollout(scenario, network, episodes, make_rule("slack-reliable", c))
                                                .engine.metrics()["success_rate"])) for c in cands])


def tune_informed(scenario, network, tuning: Episodes, grid: dict, switches: dict) -> tuple[dict, float]:
    """The grid's best parameters of ``InformedSlackReliable`` on ``tuning``; the candidates run
    CANDIDATES_PER_BATCH at a time as one batch, each on the same episodes."""
    cands = candidates("slack-reliable", None, grid)
    E = tuning.batch
    scores: list[float] = []
    for lo in range(0, len(cands), CANDIDATES_PER_BATCH):
        part = cands[lo:lo + CANDIDATES_PER_BATCH]
        batch = tuning.select(np.tile(np.arange(E), len(part)))
        rule = InformedSlackReliable(**{key: np.repeat([c[key] for c in part], E) for key in part[0]}, **switches)
        rate = rollout(scenario, network, batch, rule).engine.metrics()["success_rate"]
        scores.extend(rate.reshape(len(part), E).mean(axis=1).tolist())
    return best_candidate(cands, scores)


def result_files(k: int) -> tuple[Path, Path]:
    """Network k's committed results: the best learner's (with the wide-grid rule), the main job's."""
    return (ROOT / f"docs/results/variants/counterfactual-wide-teacher-8k-net{k}.json",
            ROOT / (f"docs/results/main-net{k}.json" if k <= 2 else f"docs/results/variants/project-net{k}.json"))


def network_rows(k: int, grid: str) -> dict:
    best, main = (json.loads(f.read_text()) for f in result_files(k))
    if best["evaluation_seeds"] != main["evaluation_seeds"]:
        raise SystemExit(f"network {k}: the two result files were scored on different episodes")
    scenario = scenario_from_dict(best["scenario"])
    network = sample_network(scenario, k)
    seeds = best["evaluation_seeds"]
    rates = {name: simulate(scenario, network, seeds, GreedyCentral(math.inf, name, **switches))["success_rate"]
             for name, switches in VARIANTS.items()}
    if not np.allclose(per_episode(best, "central-earliest"), rates["central-earliest"]):
        raise SystemExit(f"network {k}: central-earliest does not reproduce the result file's")
    # Tuned as o2o tune tunes the rule: the same 10 validation episodes for every candidate.
    tuning = sample_episodes(scenario, network, validation_seeds(DEFAULT_EPISODES, None))
    for name, switches in {**INFORMED, STRATIFIED: None}.items():
        start = time.perf_counter()
        if switches is None:
            params, score = tune_stratified(scenario, network, tuning, CHOICES[grid])
            held_out = stratified(sample_episodes(scenario, network, seeds))
            rates[name] = rollout(scenario, network, held_out, make_rule("slack-reliable", params)
                                  ).engine.metrics()["success_rate"]
        else:
            params, score = tune_informed(scenario, network, tuning, CHOICES[grid], switches)
            rates[name] = simulate(scenario, network, seeds, InformedSlackReliable(**params, **switches))["success_rate"]
        print(f"network {k}, {name}: tuned {params} (validation {score:.4f}, "
              f"{time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return {"network": k, "episodes": len(seeds), **rates,
            "rule (wide grid)": per_episode(best, "slack-reliable"),
            "best learner": per_episode(best, "o2o-drl"),
            "rule (shipped grid)": per_episode(main, "slack-reliable"),
            "default learner": per_episode(main, "o2o-drl")}


def main(network_seeds: list[int], grid: str, markdown: bool) -> None:
    rows = [network_rows(k, grid) for k in network_seeds]
    if markdown:   # each paired with the rule tuned on the grid the informed rules were tuned on
        same = f"rule ({grid} grid)"
        names = ["best learner", "central-earliest", "placed alone", *INFORMED, STRATIFIED]
        print(f"| network | {same} | " + " | ".join(f"{n} − it" for n in names) + " |")
        print("|---|---|" + "---|" * len(names))
        for r in rows:
            rule = r[same]
            print(f"| {r['network']} | {rule.mean():.4f} | " + " | ".join(ci(r[n] - rule) for n in names) + " |")
        return
    for r in rows:
        print(f"network {r['network']} ({r['episodes']} held-out episodes)")
        for name in ("rule (wide grid)", "rule (shipped grid)", "default learner", "best learner", *VARIANTS,
                     *INFORMED, STRATIFIED):
            x = r[name]
            print(f"  {name:32s} {x.mean():.4f}   − rule (wide grid) {ci(x - r['rule (wide grid)'])}   "
                  f"− rule (shipped grid) {ci(x - r['rule (shipped grid)'])}")
        print(f"  central-earliest − placed alone {ci(r['central-earliest'] - r['placed alone'])}; "
              f"placed alone − alone, own sends {ci(r['placed alone'] - r['alone, own sends'])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("network_seeds", nargs="*", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--grid", choices=sorted(CHOICES), default="shipped",
                        help="the grid the informed rule is tuned on (default: the rule's shipped grid)")
    parser.add_argument("--markdown", action="store_true", help="print the table of docs/yardsticks.md")
    args = parser.parse_args()
    for k in args.network_seeds:
        missing = [str(f.relative_to(ROOT)) for f in result_files(k) if not f.exists()]
        if missing:
            parser.error(f"network seed {k} has no committed results to pair with ({', '.join(missing)}); "
                         "choose among 0 1 2 3")
    main(args.network_seeds, args.grid, args.markdown)
