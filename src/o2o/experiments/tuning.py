"""Tuning a rule's parameters per network and scenario on validation episodes (``o2o tune``).

A tunable rule (``o2o.schedulers.TUNABLE``: ``spread``, ``slack-reliable``) is run with every
candidate of its grid (``GRIDS``, the default parameters first) on the same ``VALIDATION``
episodes (``o2o.core.seeds``; never the held-out ``TEST`` ones), and the candidate with the
highest mean success rate is kept (a tie keeps the earlier candidate, so the defaults win a
tie). The record says what was chosen and on what: the scenario and its fingerprint, the
network seed, the validation seeds, every candidate's score. ``o2o simulate``, ``o2o run``
and the figures accept it (``--tuned FILE``); where none is given, ``o2o run`` and the
sweeps' cells tune in-process with the same function (deterministic: the same record).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from o2o.core import seeds
from o2o.core.decpomdp import check_probes
from o2o.core.episodes import sample_episodes
from o2o.core.errors import UserError
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.schedulers import TUNABLE, make_rule
from o2o.sim.rollout import rollout

FORMAT = "o2o-tuned-v1"
DEFAULT_EPISODES = 10

# The candidates of each rule: the product of these values (the defaults are added first when
# they are not on the grid). spread: 7 x 8 = 56; slack-reliable: 4 x 3 x 4 x 3 = 144 (a first
# grid of 320, local_margin from 0.6, peer_margin to 1.0, slack_power from 0, chose inside
# this one on the validation episodes of network seeds 0-2 and of 10 and 50 nodes).
GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "spread": {"local_margin": (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
               "peer_margin": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)},
    "slack-reliable": {"local_margin": (0.7, 0.8, 0.9, 1.0),
                       "peer_margin": (0.7, 0.8, 0.9),
                       "rel_power": (0.0, 1.0, 4.0, 16.0),
                       "slack_power": (0.5, 1.0, 2.0)},
}
# slack-reliable-k: slack-reliable's grid at a fixed probe budget k (``fixed={"probes": k}``).
GRIDS["slack-reliable-k"] = GRIDS["slack-reliable"]
# A wider grid for slack-reliable (4 x 4 x 6 x 6 = 576: peer_margin to 1.0, sharper draws):
# chosen on the same validation episodes it is better on other validation episodes of every
# network tried (docs/tuning.md, "Is the grid wide enough?"). ``o2o tune`` keeps ``GRIDS``;
# this one is for the comparisons that ask whether the rule could be tuned further, and for a
# generalist's teacher (``o2o train generalist --teacher-grid wide``).
WIDE_GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "slack-reliable": {"local_margin": (0.7, 0.8, 0.9, 1.0), "peer_margin": (0.7, 0.8, 0.9, 1.0),
                       "rel_power": (0.0, 1.0, 4.0, 16.0, 32.0, 64.0),
                       "slack_power": (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)},
}


def scenario_fingerprint(scenario: Scenario) -> str:
    """SHA-256 of the scenario's fields (its name left out: the same network and workload under
    another name is the same scenario)."""
    fields = {k: v for k, v in scenario.model_dump(mode="json").items() if k != "name"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def candidates(name: str, fixed: dict[str, float] | None = None,
               grid: dict[str, tuple[float, ...]] | None = None) -> list[dict[str, float]]:
    """The grid of ``name`` (``GRIDS``, or ``grid`` where given), its default parameters first;
    ``fixed`` parameters (not on the grid, e.g. slack-reliable-k's ``probes``) are added to every
    candidate."""
    grid = GRIDS[name] if grid is None else grid
    keys = list(grid)
    fixed = {k: float(v) for k, v in (fixed or {}).items()}
    clash = sorted(set(fixed) & set(keys))
    if clash:
        raise UserError(f"{name}: {', '.join(clash)} is tuned on its grid and cannot be fixed")
    default = {k: float(TUNABLE[name].PARAMS[k]) for k in keys}
    out = [{**default, **fixed}]
    for values in itertools.product(*(grid[k] for k in keys)):
        cand = {k: float(v) for k, v in zip(keys, values)}
        if cand != default:
            out.append({**cand, **fixed})
    return out


def validation_seeds(episodes: int, first: int | None = None) -> list[int]:
    """``episodes`` consecutive seeds from ``first`` (default the first validation seed); every
    one must be a validation seed: tuning never sees a held-out (or logged) episode."""
    if episodes < 1:
        raise UserError(f"tuning needs at least 1 episode, got {episodes}")
    first = seeds.VALIDATION.start if first is None else int(first)
    last = first + episodes - 1
    if first not in seeds.VALIDATION or last not in seeds.VALIDATION:
        raise UserError(f"tuning uses validation episode seeds only: seeds {first}..{last} leave the "
                        f"validation range [{seeds.VALIDATION.start}, {seeds.VALIDATION.stop})")
    return list(range(first, last + 1))


def tune_rule(scenario: Scenario, network: Network, name: str, *, network_seed: int,
              episodes: int = DEFAULT_EPISODES, first_seed: int | None = None,
              fixed: dict[str, float] | None = None,
              grid: dict[str, tuple[float, ...]] | None = None) -> dict[str, Any]:
    """Grid search of ``name``'s parameters on validation episodes; the tuning record.
    ``fixed``: parameters every candidate has (slack-reliable-k's ``probes``); ``grid``: another
    grid than ``GRIDS[name]`` (e.g. ``WIDE_GRIDS[name]``)."""
    if name not in TUNABLE:
        raise UserError(f"{name!r} has no parameters to tune; tunable: {', '.join(TUNABLE)}")
    tune_seeds = validation_seeds(episodes, first_seed)
    start = time.perf_counter()
    searched = grid if grid is not None else GRIDS[name]
    grid = candidates(name, fixed, searched)
    if "probes" in TUNABLE[name].PARAMS:  # a k beyond N - 1 is refused before anything runs
        check_probes(grid[0].get("probes", TUNABLE[name].PARAMS["probes"]), network.n)
    batch = sample_episodes(scenario, network, tune_seeds)
    scored = []
    for params in grid:
        metrics = rollout(scenario, network, batch, make_rule(name, params)).engine.metrics()
        scored.append({"params": params, "score": float(np.mean(metrics["success_rate"]))})
    best = max(range(len(scored)), key=lambda k: (scored[k]["score"], -k))
    return {
        "format": FORMAT,
        "scheduler": name,
        "params": scored[best]["params"],
        "validation_score": scored[best]["score"],
        "default_params": scored[0]["params"],
        "default_score": scored[0]["score"],
        "scenario": scenario.model_dump(mode="json"),
        "scenario_fingerprint": scenario_fingerprint(scenario),
        "network_seed": int(network_seed),
        "validation_seeds": tune_seeds,
        "search": f"grid of {len(scored)} candidates ({' x '.join(f'{k} {list(v)}' for k, v in searched.items())}), "
                  f"each on the same {len(tune_seeds)} validation episodes; best mean success rate",
        "candidates": scored,
        "seconds": time.perf_counter() - start,
    }


def load_tuned(path: str | Path) -> dict[str, Any]:
    """A tuning record written by ``o2o tune``; anything else is refused."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read tuned file {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise UserError(f"{path} is not a tuned file of 'o2o tune' (not JSON)") from None
    keys = ("scheduler", "params", "scenario_fingerprint", "network_seed", "validation_seeds")
    if not isinstance(record, dict) or record.get("format") != FORMAT or any(k not in record for k in keys):
        raise UserError(f"{path} is not a tuned file of 'o2o tune' (format {FORMAT})")
    name = record["scheduler"]
    if name not in TUNABLE or not isinstance(record["params"], dict):
        raise UserError(f"{path}: scheduler {name!r} is not tunable ({', '.join(TUNABLE)})")
    make_rule(name, record["params"])   # its parameters are valid (a user error if not)
    if not all(isinstance(s, int) and s in seeds.VALIDATION for s in record["validation_seeds"]):
        raise UserError(f"{path}: tuned on episode seeds outside the validation range")
    record["source"] = str(path)
    return record


def check_tuned(record: dict[str, Any], scenario: Scenario, network_seed: int) -> None:
    """Refuse a record made for another scenario or network."""
    where = record.get("source", "the tuned file")
    if record["scenario_fingerprint"] != scenario_fingerprint(scenario):
        raise UserError(f"{where} was tuned for another scenario ({record.get('scenario', {}).get('name', '?')}, "
                        f"fingerprint {record['scenario_fingerprint'][:12]}) than this one ({scenario.name}, "
                        f"{scenario_fingerprint(scenario)[:12]}); tune again with 'o2o tune' for it")
    if int(record["network_seed"]) != int(network_seed):
        raise UserError(f"{where} was tuned for network seed {record['network_seed']}, not {network_seed}; "
                        "tune again with 'o2o tune' for it")


def load_tuned_files(paths: Iterable[str | Path], scenario: Scenario, network_seed: int) -> dict[str, dict[str, Any]]:
    """The records of ``--tuned`` files by scheduler, each checked against the scenario and the
    network; two files for one scheduler are refused."""
    out: dict[str, dict[str, Any]] = {}
    for path in paths or ():
        record = load_tuned(path)
        check_tuned(record, scenario, network_seed)
        if record["scheduler"] in out:
            raise UserError(f"two tuned files for {record['scheduler']}: {out[record['scheduler']]['source']} and {path}")
        out[record["scheduler"]] = record
    return out


def tuned_rules(names: Iterable[str], scenario: Scenario, network: Network, *, network_seed: int,
                given: dict[str, dict[str, Any]] | None = None,
                episodes: int = DEFAULT_EPISODES) -> dict[str, dict[str, Any]]:
    """A tuning record for every tunable rule among ``names``: the given one (from a file), or
    one tuned here on validation episodes."""
    given = given or {}
    out = {}
    for name in names:
        if name in TUNABLE:
            out[name] = given.get(name) or {**tune_rule(scenario, network, name, network_seed=network_seed,
                                                        episodes=episodes), "source": "auto"}
    return out


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """What a comparison keeps of a tuning record (results.json, figure cells, simulate --json)."""
    keys = ("params", "validation_score", "default_params", "default_score", "validation_seeds",
            "network_seed", "scenario_fingerprint", "source")
    return {k: record[k] for k in keys if k in record}


def logging_params(heuristic: str, log_tuned: bool, scenario: Scenario, network: Network, *,
                   network_seed: int, tuning: dict[str, dict[str, Any]] | None = None
                   ) -> dict[str, float] | None:
    """The values the logging heuristic runs at (paper IV-C1, heuristic control): with
    ``log_tuned`` and a tunable rule, its values tuned for this network on validation episodes
    (the record in ``tuning`` where there is one, else tuned here: deterministic, so every
    caller gets the same); otherwise None, its defaults."""
    if not log_tuned or heuristic not in TUNABLE:
        return None
    record = (tuning or {}).get(heuristic) or tune_rule(scenario, network, heuristic, network_seed=network_seed)
    return dict(record["params"])
