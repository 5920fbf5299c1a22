"""Sweep specs: the paper's experiments (V-D to V-H, VI-C) as data.

A sweep spec is a YAML file: a base scenario, one swept field and its values, the methods, the
training seeds and the sizes of a ``quick`` and a ``full`` plan. The paper's figures ship with
the package (``specs/fig4.yaml`` ... ``specs/fig8.yaml``); ``o2o sweep SPEC.yaml`` runs a
user's own the same way.

.. code-block:: yaml

    name: fig5a
    title: Success rate against task size (paper Fig. 5a)
    where: simulator            # or testbed (real node processes, paper VI)
    scenario: paper-sim         # a preset or a scenario YAML file (relative to the spec)
    set: {}                     # base overrides, key: value
    network_seed: 0
    logging: ratc               # the heuristic whose task logs train the learned methods
                                # (default: the settings' own, as `o2o run` uses)
    sweep:
      field: task_size_kb       # a scenario field, or `logging` (fig4: the logging heuristic)
      values: [[1000, 4000], [1000, 6000]]
      label: task size (KB)
    methods: all                # or a list: heuristics, central, bound, learned methods
    plot: lines                 # or bars (fig4)
    plans:
      quick: {seeds: 1, log_episodes: 60, offline_steps: 2000, online_episodes: 64, eval_episodes: 10}
      full:  {seeds: 3, ...}

``methods: all`` means every method of ``o2o.experiments.methods`` (every decentralized
heuristic the project ships, central, the learned methods) and the bound, resolved when the
sweep runs, so a heuristic added to the project joins every figure. ``logging`` values
``all`` mean every decentralized heuristic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from o2o.core.errors import UserError
from o2o.core.limits import MAX_SEED, check_counts
from o2o.core.scenario import PRESETS, Scenario, load_scenario, read_yaml_file
from o2o.experiments.methods import CENTRAL_METHODS, HEURISTICS, LEARNED, METHODS, Plan
from o2o.experiments.specs import FIGURES, PLAN_NAMES
from o2o.experiments.testbed_job import TestbedPlan
from o2o.experiments.tuning import DEFAULT_EPISODES as TUNE_EPISODES
from o2o.experiments.tuning import GRIDS, load_tuned, scenario_fingerprint
from o2o.learn.settings import learner_settings

LOGGING_FIELD = "logging"
BOUND = "bound"           # the unit that writes both bounds' cells: "bound" (LP) and BOUND_TASK
BOUND_TASK = "bound-task"
# The nodes' count a `scale_logs_with_nodes` plan's log_episodes is written for (paper-sim).
LOG_NODES_REFERENCE = 20


def decentralized_heuristics() -> tuple[str, ...]:
    """The decentralized heuristics the project ships (those of the comparison, less central)."""
    return tuple(h for h in HEURISTICS if h not in CENTRAL_METHODS)


def all_methods() -> tuple[str, ...]:
    return (*METHODS, BOUND)


# Strict: a spec's numbers and flags are taken as written (`seeds: true` or `seeds: "2"` is
# refused, not read as 1 or 2).
class SweepAxis(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    field: str
    values: list[Any] | Literal["all"]
    label: str | None = None


class SweepSpec(BaseModel):
    """A sweep: every method at every value of one field, on the same held-out episodes."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # The name makes file names (NAME.json, NAME.png): a letter or digit first, so never `.`,
    # `..` or a hidden file.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    title: str = ""
    where: Literal["simulator", "testbed"] = "simulator"
    scenario: str = "paper-sim"
    set: dict[str, Any] = Field(default_factory=dict)
    network_seed: int = Field(default=0, ge=0, le=MAX_SEED)
    logging: str | None = None   # None: the learner settings' logging heuristic
    sweep: SweepAxis
    methods: list[str] | str = "all"   # a list, or "all" (checked by _methods)
    settings: Literal["project", "paper"] = "project"
    plot: Literal["lines", "bars"] = "lines"
    scale_logs_with_nodes: bool = False
    plans: dict[str, dict[str, int]]

    @field_validator("plans")
    @classmethod
    def _plan_names(cls, value: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        missing = [p for p in PLAN_NAMES if p not in value]
        unknown = [p for p in value if p not in PLAN_NAMES]
        if missing or unknown:
            raise ValueError(f"needs exactly the plans {', '.join(PLAN_NAMES)} "
                             f"(missing: {missing or 'none'}, unknown: {unknown or 'none'})")
        return value


@dataclass(frozen=True)
class Point:
    """One value of the swept field: the scenario there and the heuristic whose logs train the
    learned methods. ``scenario_key``: the first point with the same scenario (fig4's points
    share one, so their heuristics are run once)."""

    index: int
    value: Any
    scenario: Scenario
    logging: str
    scenario_key: int

    @property
    def label(self) -> str:
        return format_value(self.value)


@dataclass(frozen=True)
class TestbedSizes(TestbedPlan):
    """The testbed pipeline's plan, with the number of training seeds."""

    __test__ = False
    seeds: int = 1


@dataclass(frozen=True)
class Sweep:
    """A validated spec with its plan chosen: what a run, a resume and a report share."""

    spec: SweepSpec
    plan_name: str
    plan: Plan | TestbedSizes
    points: list[Point]
    methods: tuple[str, ...]
    source: str                 # where the spec came from (a shipped figure or a file)
    # Tuning records given with --tuned, by scenario fingerprint, then rule; a tunable rule
    # without one is tuned in its cell (o2o.experiments.tuning).
    tuned: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def seeds(self) -> int:
        return self.plan.seeds

    @property
    def testbed(self) -> bool:
        return self.spec.where == "testbed"

    @property
    def heuristics(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m in HEURISTICS)

    @property
    def learned(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m in LEARNED)

    def identity(self) -> dict[str, Any]:
        """What decides every cell's numbers: the spec (without its plans: only the chosen
        plan's sizes count, so editing the other plan keeps this one's results), every point's
        resolved scenario (a scenario file the spec names may change) and the plan's sizes. The number of seeds is
        left out: seed k's cells are the same whatever the count, so a sweep can be extended
        with more seeds in the same database. So are the methods that ``all`` resolves to: a
        heuristic added to the project becomes missing cells, computed on the next run."""
        sizes = {k: v for k, v in asdict(self.plan).items() if k != "seeds"}
        given = {fp: {name: r["params"] for name, r in rules.items()} for fp, rules in self.tuned.items()}
        return {"spec": self.spec.model_dump(mode="json", exclude={"plans"}), "plan": self.plan_name,
                "sizes": sizes,
                "scenarios": [p.scenario.model_dump(mode="json") for p in self.points],
                # How the tunable rules get their values: the search, or the given files' values.
                "tuning": {"grids": GRIDS, "episodes": TUNE_EPISODES, "given": given,
                           # the testbed's rule cells run the tunable rules at tuned values (since
                           # protocol 2; before, at their defaults): cells of before are not reused
                           **({"testbed_rules": "tuned"} if self.testbed else {})}}

    def tuned_for(self, point: "Point", name: str) -> dict[str, Any] | None:
        """The record given with --tuned for rule ``name`` at ``point``, or None."""
        return self.tuned.get(scenario_fingerprint(point.scenario), {}).get(name)

    def spec_hash(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def log_episodes(self, point: Point) -> int:
        """Logged heuristic episodes at ``point``; with ``scale_logs_with_nodes`` the plan's
        count is for 20 nodes and scales as 20 / N, so every data set has the same rows."""
        episodes = self.plan.log_episodes
        if self.spec.scale_logs_with_nodes:
            episodes = max(1, round(episodes * LOG_NODES_REFERENCE / point.scenario.nodes))
        return episodes


def format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _canonical(value: Any) -> Any:
    """A value as the scenario reads it: whole and decimal numbers alike (4 and 4.0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def x_value(value: Any) -> float | None:
    """Where a point sits on the x-axis: a number, or the upper end of a range (the paper's
    "maximum task size"); None for a name (fig4's heuristics)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return float(value[-1])
    return None


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "tuple"}


def _user_loc(loc: tuple) -> str:
    """Where in the spec, without pydantic's names of the union members it tried
    (``methods.list[str].0`` is ``methods.0``)."""
    kept = [str(p) for p in loc
            if not (isinstance(p, str) and (p in _TYPE_NAMES or "[" in p or "-" in p))]
    return ".".join(kept) or "spec"


def _format_errors(err: ValidationError, where: str) -> str:
    """One line: the first problem of each place (a union's members each report one)."""
    parts: dict[str, str] = {}
    for e in err.errors():
        loc = _user_loc(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        if e["type"] == "string_pattern_mismatch" and loc == "name":
            msg = ("a letter or digit first, then letters, digits, _ . or -, at most 64 "
                   f"characters; got {e['input']!r}")
        parts.setdefault(loc, msg)
    # A union's outer member reports the whole value: keep the inner, more precise place.
    parts = {loc: msg for loc, msg in parts.items()
             if not any(other.startswith(loc + ".") for other in parts)}
    return f"sweep spec {where}: " + "; ".join(f"{loc}: {msg}" for loc, msg in parts.items())


def shipped_spec_path(name: str) -> Path:
    if name not in FIGURES:
        raise UserError(f"unknown figure {name!r}; choose from {', '.join(FIGURES)} or all")
    return Path(str(resources.files("o2o.experiments.specs") / f"{name}.yaml"))


def load_spec(path: str | Path) -> tuple[SweepSpec, Path]:
    """The spec in a YAML file, validated (a one-line UserError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep spec {path} does not exist (or is not a file)")
    data = read_yaml_file(path, "sweep spec")
    if not isinstance(data, dict):
        raise UserError(f"sweep spec {path}: expected a mapping of key: value")
    try:
        return SweepSpec.model_validate(data), path
    except ValidationError as err:
        raise UserError(_format_errors(err, str(path))) from None


def _plan(spec: SweepSpec, plan_name: str, seeds: int | None, where: str) -> Plan | TestbedSizes:
    if plan_name not in spec.plans:
        raise UserError(f"sweep spec {where}: no plan {plan_name!r} (plans: {', '.join(spec.plans)})")
    base = TestbedSizes() if spec.where == "testbed" else Plan()
    sizes = dict(spec.plans[plan_name])
    known = {f.name for f in fields(base)}
    unknown = sorted(set(sizes) - known)
    if unknown:
        raise UserError(f"sweep spec {where}: plans.{plan_name}: unknown size {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(known))})")
    if seeds is not None:
        sizes["seeds"] = seeds
    low = {k: v for k, v in sizes.items()
           if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "online_rounds" else 1)}
    if low:
        raise UserError(f"sweep spec {where}: plans.{plan_name}: sizes must be whole numbers >= 1, "
                        f"got {low}")
    check_counts(sizes, f"sweep spec {where}: plans.{plan_name}.")
    plan = replace(base, **sizes)
    if isinstance(plan, Plan) and plan.offline_steps is None:  # left out: the settings' own
        plan = replace(plan, offline_steps=learner_settings(spec.settings).offline_steps)
    return plan


def _methods(spec: SweepSpec, where: str) -> tuple[str, ...]:
    known = all_methods()
    if isinstance(spec.methods, str) and spec.methods != "all":
        raise UserError(f"sweep spec {where}: methods must be all or a list of methods "
                        f"({', '.join(known)}), got {spec.methods!r}")
    if spec.methods == "all":
        chosen = known
    else:
        unknown = [m for m in spec.methods if m not in known]
        if unknown:
            raise UserError(f"sweep spec {where}: unknown method {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(known)})")
        if not spec.methods:
            raise UserError(f"sweep spec {where}: methods is empty")
        chosen = tuple(m for m in known if m in spec.methods)   # the report's order
    return chosen


def _check_logging(name: str, where: str) -> str:
    if name not in decentralized_heuristics():
        raise UserError(f"sweep spec {where}: logging heuristic {name!r} is not a decentralized "
                        f"heuristic ({', '.join(decentralized_heuristics())})")
    return name


def _points(spec: SweepSpec, base_dir: Path, where: str) -> list[Point]:
    axis = spec.sweep
    values = axis.values
    if axis.field == LOGGING_FIELD:
        values = list(decentralized_heuristics()) if values == "all" else values
    elif values == "all":
        raise UserError(f"sweep spec {where}: sweep.values 'all' is only for the field {LOGGING_FIELD}")
    if not values:
        raise UserError(f"sweep spec {where}: sweep.values is empty; give at least one value")
    if axis.field != LOGGING_FIELD and (axis.field == "name" or axis.field not in Scenario.model_fields):
        known = sorted(k for k in Scenario.model_fields if k != "name")
        raise UserError(f"sweep spec {where}: sweep.field {axis.field!r} is not a scenario field nor "
                        f"{LOGGING_FIELD!r} (fields: {', '.join(known)})")
    if len({json.dumps(_canonical(v), sort_keys=True) for v in values}) != len(values):
        raise UserError(f"sweep spec {where}: sweep.values repeats a value (4 and 4.0 are one "
                        "value)")
    if "name" in spec.set or axis.field in spec.set:
        raise UserError(f"sweep spec {where}: set must not fix name nor the swept field")
    source = spec.scenario
    if source not in PRESETS:
        source = str((base_dir / source) if not Path(source).is_absolute() else Path(source))
    base = [f"{k}={json.dumps(v)}" for k, v in spec.set.items()]
    points: list[Point] = []
    seen: dict[str, int] = {}
    default_logging = spec.logging or learner_settings(spec.settings).log_heuristic
    for k, value in enumerate(values):
        overrides = list(base)
        logging = default_logging
        if axis.field == LOGGING_FIELD:
            logging = str(value)
        else:
            overrides.append(f"{axis.field}={json.dumps(value)}")
        try:
            scenario = load_scenario(source, overrides)
        except UserError as exc:
            raise UserError(f"sweep spec {where}: point {k} ({axis.field} = {format_value(value)}): "
                            f"{exc}") from None
        _check_logging(logging, where)
        key = scenario.model_dump_json()
        scenario_key = seen.setdefault(key, k)
        if scenario_key != k and axis.field != LOGGING_FIELD:
            raise UserError(f"sweep spec {where}: sweep.values: point {k} ({format_value(value)}) "
                            f"is the same scenario as point {scenario_key}; give each value once")
        points.append(Point(k, value, scenario, logging, scenario_key))
    return points


def build_sweep(spec: SweepSpec, plan_name: str = "quick", seeds: int | None = None, *,
                base_dir: Path = Path("."), source: str = "") -> Sweep:
    where = source or spec.name
    plan = _plan(spec, plan_name, seeds, where)
    methods = _methods(spec, where)
    points = _points(spec, base_dir, where)
    sweep = Sweep(spec, plan_name, plan, points, methods, source or spec.name)
    if not sweep.testbed:   # scaled with the nodes, a point may log more than the plan says
        for p in points:
            check_counts({"log_episodes": sweep.log_episodes(p)},
                         f"sweep spec {where}: point {p.index} ({p.label}): ")
    return sweep


def load_sweep(figure_or_path: str, plan_name: str = "quick", seeds: int | None = None, *,
               shipped: bool) -> Sweep:
    """A shipped figure by name (``shipped``) or a user's spec file, with its plan."""
    path = shipped_spec_path(figure_or_path) if shipped else Path(figure_or_path)
    spec, path = load_spec(path)
    if shipped and spec.name != figure_or_path:
        raise AssertionError(f"shipped spec {path} is named {spec.name}")
    return build_sweep(spec, plan_name, seeds, base_dir=path.parent,
                       source=figure_or_path if shipped else str(path))


def with_tuned(sweeps: list[Sweep], paths: list[str]) -> list[Sweep]:
    """The sweeps with the records of ``--tuned`` files: each applies at the points of its
    scenario and network seed; a file that fits no point of any sweep, or two files for one
    rule and scenario, are refused."""
    if not paths:
        return sweeps
    records = [load_tuned(path) for path in paths]
    used: set[int] = set()
    out = []
    for sweep in sweeps:
        tuned: dict[str, dict[str, dict[str, Any]]] = {}
        fingerprints = {scenario_fingerprint(p.scenario) for p in sweep.points}
        for k, record in enumerate(records):
            fp = record["scenario_fingerprint"]
            if fp not in fingerprints or int(record["network_seed"]) != sweep.spec.network_seed:
                continue
            rules = tuned.setdefault(fp, {})
            if record["scheduler"] in rules:
                raise UserError(f"two tuned files for {record['scheduler']} at one point of {sweep.name}: "
                                f"{rules[record['scheduler']]['source']} and {record['source']}")
            rules[record["scheduler"]] = record
            used.add(k)
        out.append(replace(sweep, tuned=tuned))
    for k, record in enumerate(records):
        if k not in used:
            raise UserError(f"{record['source']} was tuned for a scenario or network seed that no point of "
                            f"{', '.join(s.name for s in sweeps)} has; tune it with 'o2o tune' for a point's "
                            "scenario (--scenario and --set as the spec) and the spec's network seed")
    return out
