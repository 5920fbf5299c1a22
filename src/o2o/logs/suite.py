"""Reference data sets for offline RL, in D4RL's manner: a versioned suite of logged data sets
with fixed episode splits and reference scores, built from seeds alone.

A suite (``SUITES``) fixes a scenario, network seeds, loads (scenario overrides), behaviour
policies (scheduler names; ``mixture`` draws one of ``mixture_of`` per episode) and three
disjoint episode splits from the named seed ranges (``o2o.core.seeds``):

* ``train``: ``train_episodes`` seeds from LOGS, the data a learner trains on;
* ``validation``: ``validation_episodes`` seeds from VALIDATION; the behaviours' logs of the first
  ``validation_data_episodes`` of them are stored (for model selection), and every reference
  heuristic runs on all of them to choose the best heuristic (the tuned rules, ``tuned``, are
  tuned on validation seeds too: ``o2o tune``'s grid search);
* ``test``: ``test_episodes`` seeds from TEST, held out: the reference scores are measured on
  them, and a trained policy is scored by running it there in the simulator.

For every (network seed, load) cell the manifest (``suite.json``) holds the reference scores on
the test split: ``random``, the best decentralized heuristic (chosen on the validation split;
the suite's *expert*, as D4RL's expert policy) and ``central`` (the full-information planner,
which no decentralized policy can match; a second, harder yardstick). A score s (success rate
on the test split) is normalised as D4RL does:

    normalised(s) = 100 (s - random) / (reference - random)

with reference = expert (``normalised_score(..., "expert")``) or central. Every array is a
function of the suite's seeds, and files are written without time stamps, so two builds give the
same bytes (the manifest's sha256 of every file).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from o2o.core.decpomdp import OBS_LAYOUT_V2, nodes_of
from o2o.core.errors import UserError
from o2o.core.metrics import mean_ci95
from o2o.core.network import Network, sample_network
from o2o.core.scenario import Scenario, load_scenario
from o2o.core.seeds import LOGS, TEST, VALIDATION
from o2o.logs.dataset import simulated_dataset
from o2o.logs.suite_format import compact, expand, read_suite_file, write_suite_file
from o2o.sim import make_scheduler
from o2o.sim.rollout import simulate

FORMAT = "o2o-suite-1"
MANIFEST = "suite.json"
MIXTURE = "mixture"
SPLITS = ("train", "validation")      # the splits stored as data sets (test: seeds only)


@dataclass(frozen=True)
class Load:
    name: str
    overrides: tuple[str, ...]        # scenario overrides, as ``--set``


@dataclass(frozen=True)
class SuiteSpec:
    version: str
    scenario: str
    overrides: tuple[str, ...]
    network_seeds: tuple[int, ...]
    loads: tuple[Load, ...]
    behaviours: tuple[str, ...]       # scheduler names, and ``mixture``
    mixture_of: tuple[str, ...]
    references: tuple[str, ...]       # decentralized heuristics scored on validation and test
    train_episodes: int
    validation_episodes: int
    validation_data_episodes: int
    test_episodes: int
    tuned: tuple[str, ...] = ()       # rules whose parameters are tuned per cell (validation)
    mixture_seed: int = 0
    obs_layout: str = OBS_LAYOUT_V2   # v2 holds v1 as its first 3N + 6 columns
    reward_credit: str = "node"

    def splits(self) -> dict[str, list[int]]:
        return {"train": LOGS.take(self.train_episodes),
                "validation": VALIDATION.take(self.validation_episodes),
                "test": TEST.take(self.test_episodes)}


LOADS = (Load("low", ("arrival_prob=[0, 0.6]",)), Load("default", ()))
SAME_INFORMATION = "slack-reliable"   # the same-information rule, tuned per network and load
HEURISTIC_REFERENCES = ("random", "local", "ratc", "rda", "esf", "spread", SAME_INFORMATION)

SUITES: dict[str, SuiteSpec] = {
    # About 2 minutes and ~100 MB on 2 cores (docs/datasets.md has the measured figures).
    "v1": SuiteSpec(version="v1", scenario="paper-sim", overrides=(), network_seeds=(0, 1, 2),
                    loads=LOADS, behaviours=("random", "ratc", "spread", SAME_INFORMATION, MIXTURE),
                    mixture_of=("random", "ratc", "spread", SAME_INFORMATION),
                    references=HEURISTIC_REFERENCES, tuned=(SAME_INFORMATION,),
                    train_episodes=16, validation_episodes=50, validation_data_episodes=4,
                    test_episodes=100),
    # A few seconds: what the tests build.
    "tiny": SuiteSpec(version="tiny", scenario="paper-sim", overrides=("nodes=4", "slots=8"),
                      network_seeds=(0,), loads=(Load("default", ()),),
                      behaviours=("random", "ratc", SAME_INFORMATION, MIXTURE),
                      mixture_of=("random", "ratc", SAME_INFORMATION),
                      references=("random", "ratc", "spread", SAME_INFORMATION),
                      tuned=(SAME_INFORMATION,), train_episodes=4,
                      validation_episodes=4, validation_data_episodes=2, test_episodes=6),
}

# ``factory(name, scenario, network, network_seed) -> (scheduler, parameters)``: how a behaviour
# or reference name becomes a scheduler; the parameters go into the manifest. The suite's
# builder (``o2o dataset build``) tunes the rules named in ``SuiteSpec.tuned`` on validation
# episodes (``o2o.experiments.suite_policies``); ``plain_factory`` keeps every default.
PolicyFactory = Callable[[str, Scenario, Network, int], tuple[Any, dict[str, Any]]]


def plain_factory(name: str, scenario: Scenario, network: Network, network_seed: int):
    """A scheduler of the simulator by name, with its default parameters."""
    return make_scheduler(name), {}


def suite_spec(name: str) -> SuiteSpec:
    if name not in SUITES:
        raise UserError(f"unknown suite {name!r}; choose from {', '.join(SUITES)}")
    return SUITES[name]


def dataset_file(network_seed: int, load: str, behaviour: str, split: str) -> str:
    return f"net{network_seed}-{load}-{behaviour}-{split}.npz"


def mixture_draws(spec: SuiteSpec, network_seed: int, load_index: int, split: str,
                  episodes: int) -> list[str]:
    """The component of the mixture that runs each episode: uniform, from a seed of its own
    per (network, load, split)."""
    rng = np.random.default_rng([spec.mixture_seed, network_seed, load_index, SPLITS.index(split)])
    return [spec.mixture_of[k] for k in rng.integers(0, len(spec.mixture_of), size=episodes)]


def _logged(scenario, network, schedulers: dict[str, Any], seeds: list[int], runs: list[str],
            spec: SuiteSpec) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The data set (project layout) and per-episode success rates of episode ``seeds[k]``
    run by ``schedulers[runs[k]]``, in the order of ``seeds``."""
    rows_per_episode = scenario.slots * network.n
    parts: dict[str, np.ndarray] = {}
    rates = np.empty(len(seeds))
    for name in dict.fromkeys(runs):
        idx = [k for k, r in enumerate(runs) if r == name]
        chosen = [seeds[k] for k in idx]
        part = simulated_dataset(scenario, network, schedulers[name], chosen, spec.reward_credit,
                                 obs_layout=spec.obs_layout)
        rates[idx] = simulate(scenario, network, chosen, schedulers[name])["success_rate"]
        for key, value in part.items():
            if value.ndim == 0:
                parts[key] = value
                continue
            if key not in parts:
                parts[key] = np.empty((len(seeds) * rows_per_episode, *value.shape[1:]), value.dtype)
            per_episode = parts[key].reshape(len(seeds), rows_per_episode, *value.shape[1:])
            per_episode[idx] = value.reshape(len(idx), rows_per_episode, *value.shape[1:])
    return parts, rates


def _scores(scenario, network, schedulers: dict[str, Any], seeds: list[int]) -> dict[str, dict]:
    out = {}
    for name, scheduler in schedulers.items():
        mean, lo, hi = mean_ci95(simulate(scenario, network, seeds, scheduler)["success_rate"])
        out[name] = {"success_rate": mean, "ci95": [lo, hi]}
    return out


def build_suite(spec: SuiteSpec, out: str | Path, factory: PolicyFactory = plain_factory,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build every data set of the suite and its manifest in folder ``out``; returns the
    manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = spec.splits()
    data_seeds = {"train": splits["train"],
                  "validation": splits["validation"][:spec.validation_data_episodes]}
    cells = []
    for net_seed in spec.network_seeds:
        for load_index, load in enumerate(spec.loads):
            scenario = load_scenario(spec.scenario, [*spec.overrides, *load.overrides])
            network = sample_network(scenario, net_seed)
            names = [b for b in spec.behaviours if b != MIXTURE]
            names += [n for n in (*spec.mixture_of, *spec.references) if n not in names]
            made = {n: factory(n, scenario, network, net_seed) for n in names}
            schedulers = {n: s for n, (s, _) in made.items()}
            datasets: dict[str, dict] = {}
            for behaviour in spec.behaviours:
                datasets[behaviour] = {}
                for split in SPLITS:
                    seeds = data_seeds[split]
                    runs = (mixture_draws(spec, net_seed, load_index, split, len(seeds))
                            if behaviour == MIXTURE else [behaviour] * len(seeds))
                    if progress is not None:
                        progress(f"network {net_seed}, load {load.name}: {behaviour} {split}")
                    data, rates = _logged(scenario, network, schedulers, seeds, runs, spec)
                    name = dataset_file(net_seed, load.name, behaviour, split)
                    written = write_suite_file(compact(data, network.n, scenario.slots, runs), out / name)
                    datasets[behaviour][split] = {
                        "file": name, **written, "episodes": len(seeds),
                        "first_seed": seeds[0], "rows": int(data["actions"].shape[0]),
                        "decisions": int((data["actions"] < network.n).sum()),
                        "success_rate": float(rates.mean()),
                        **({"episodes_per_component": {c: runs.count(c) for c in spec.mixture_of}}
                           if behaviour == MIXTURE else {})}
            if progress is not None:
                progress(f"network {net_seed}, load {load.name}: reference scores")
            refs = {n: schedulers[n] for n in spec.references}
            validation = {n: s["success_rate"] for n, s in
                          _scores(scenario, network, refs, splits["validation"]).items()}
            test = _scores(scenario, network, {**refs, "central": make_scheduler("central")},
                           splits["test"])
            best = max(spec.references, key=lambda n: (validation[n], n))
            cells.append({
                "network_seed": net_seed, "load": load.name, "overrides": list(load.overrides),
                "nodes": network.n, "slots": scenario.slots,
                "parameters": {n: p for n, (_, p) in made.items() if p},
                "references": {"random": test["random"]["success_rate"],
                               "expert": test[best]["success_rate"], "expert_scheduler": best,
                               "central": test["central"]["success_rate"]},
                "test_scores": test, "validation_scores": validation, "datasets": datasets})
    manifest = {
        "format": FORMAT, "suite": spec.version, "scenario": spec.scenario,
        "overrides": list(spec.overrides), "obs_layout": spec.obs_layout,
        "reward_credit": spec.reward_credit,
        "behaviours": {b: ({"mixture_of": list(spec.mixture_of), "draw": "one component per "
                            "episode, uniform, seeded per (network, load, split)"}
                           if b == MIXTURE else {"scheduler": b}) for b in spec.behaviours},
        "splits": {name: {"range": rng.name, "first_seed": seeds[0], "episodes": len(seeds),
                          **({"stored_episodes": spec.validation_data_episodes}
                             if name == "validation" else {})}
                   for (name, seeds), rng in zip(splits.items(), (LOGS, VALIDATION, TEST))},
        "normalised_score": "100 (score - random) / (reference - random); reference = expert "
                            "(the best heuristic on the validation split) or central; score = "
                            "mean success rate on the test split",
        "spec": {k: v for k, v in asdict(spec).items() if k != "loads"},
        "cells": cells,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def normalised_score(score: float, cell: dict, reference: str = "expert") -> float:
    """D4RL's normalised score of a success rate on the test split of ``cell``."""
    refs = cell["references"]
    return 100.0 * (score - refs["random"]) / (refs[reference] - refs["random"])


class Suite:
    """A built suite, read from its folder: its manifest, cells, data sets and splits."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise UserError(f"{self.folder} is not a data-set suite (no {MANIFEST}); build one "
                            "with 'o2o dataset build --suite v1 --out DIR'")
        try:
            self.manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
        if self.manifest.get("format") != FORMAT:
            raise UserError(f"{path} has format {self.manifest.get('format')!r}; this o2o reads {FORMAT}")

    def cell(self, network_seed: int, load: str) -> dict:
        for cell in self.manifest["cells"]:
            if cell["network_seed"] == network_seed and cell["load"] == load:
                return cell
        have = ", ".join(f"{c['network_seed']}/{c['load']}" for c in self.manifest["cells"])
        raise UserError(f"the suite has no network seed {network_seed} at load {load!r} "
                        f"(it has {have})")

    def scenario_network(self, cell: dict) -> tuple[Scenario, Network]:
        scenario = load_scenario(self.manifest["scenario"], [*self.manifest["overrides"], *cell["overrides"]])
        return scenario, sample_network(scenario, cell["network_seed"])

    def split_seeds(self, split: str) -> list[int]:
        s = self.manifest["splits"][split]
        return list(range(s["first_seed"], s["first_seed"] + s["episodes"]))

    def stored(self, cell: dict, behaviour: str, split: str = "train") -> dict[str, np.ndarray]:
        """The suite file's arrays (``o2o.logs.suite_format``)."""
        if behaviour not in cell["datasets"]:
            raise UserError(f"the suite has no behaviour {behaviour!r}; it has "
                            f"{', '.join(cell['datasets'])}")
        if split not in SPLITS:
            raise UserError(f"data sets are stored for the splits {', '.join(SPLITS)}, not {split!r}")
        return read_suite_file(self.folder / cell["datasets"][behaviour][split]["file"])

    def dataset(self, cell: dict, behaviour: str, split: str = "train") -> dict[str, np.ndarray]:
        """The data set in the project's layout (``o2o.logs.dataset``)."""
        data = expand(self.stored(cell, behaviour, split))
        if nodes_of(data["observations"].shape[1], str(data["obs_layout"])) != cell["nodes"]:
            raise UserError(f"{cell['datasets'][behaviour][split]['file']} does not fit the manifest")
        return data
