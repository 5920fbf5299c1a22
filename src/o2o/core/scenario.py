"""Scenarios: the edge network and workload of the paper's system model (III-A) and
settings (V-A), as a validated settings model.

A scenario comes from a preset name (``paper-sim``, ``paper-testbed``) or a YAML file, and can be
adjusted with ``key=value`` overrides whose value is read as YAML (``arrival_prob=[0,0.6]``).
Ranges ``[lo, hi]`` are uniform draws; a scalar where a range is allowed means ``[x, x]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from o2o.core.errors import UserError
from o2o.core.yaml_input import MAX_FILE_CHARS, MAX_VALUE_CHARS, YamlInputError, parse_yaml


class ScenarioError(UserError, ValueError):
    """A scenario the user asked for cannot be built; the message says what to change."""


def _as_range(value: Any) -> Any:
    """Accept ``x`` as ``[x, x]`` and a 2-element list or tuple as ``(lo, hi)``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value), float(value))
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"expected a number or a range [lo, hi], got {list(value)!r}")
        return tuple(value)
    return value


Range = tuple[float, float]


# Supported sizes: every part works up to these (memory permitting: o2o.core.limits).
MAX_NODES = 1024
MAX_SLOTS = 100_000
MAX_CORES = 4096
# Supported ranges of the other numbers (both ends of a range): wide enough for any edge
# network, narrow enough that no time, size or rate overflows or underflows in the simulator.
SUPPORTED: dict[str, tuple[float, float]] = {
    "slot_s": (1e-3, 3600.0),            # 1 ms to an hour
    "deadline_s": (1e-3, 86_400.0),      # 1 ms to a day
    "task_size_kb": (1e-3, 1e9),         # a byte to a terabyte
    "complexity": (1e-3, 1e9),           # CPU cycles per bit
    "core_hz": (1e3, 1e13),
    "link_rate_mbps": (1e-3, 1e7),
    "node_fail_rate": (0.0, 1e3),        # failures per second
    "link_fail_rate": (0.0, 1e3),
    "queue_coef": (1e-3, 1e6),
}


class Scenario(BaseModel):
    """One edge network and its workload. Units are in the field names. Every number must be
    finite (no NaN or infinity)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = "custom"
    nodes: Annotated[int, Field(ge=2, le=MAX_NODES, description="number of edge nodes N (fully connected)")] = 20
    slot_s: Annotated[float, Field(gt=0, description="slot length in seconds")] = 0.5
    slots: Annotated[int, Field(ge=1, le=MAX_SLOTS, description="arrival slots per episode T")] = 100
    arrival_prob: Range = (0.0, 1.0)
    task_size_kb: Range = (1000.0, 8000.0)
    complexity: Range = (800.0, 2400.0)
    deadline_s: Range = (4.0, 4.0)
    cores: tuple[int, ...] = (4, 8, 16, 20, 24, 28, 32)
    core_hz: Annotated[float, Field(gt=0)] = 3e9
    link_rate_mbps: Range = (10.0, 40.0)
    node_fail_rate: Range = (0.0, 0.1)
    link_fail_rate: Range = (0.0, 0.03)
    queue_coef: Annotated[float, Field(gt=0)] = 3.0

    @field_validator(
        "arrival_prob", "task_size_kb", "complexity", "deadline_s", "link_rate_mbps",
        "node_fail_rate", "link_fail_rate", mode="before",
    )
    @classmethod
    def _range(cls, value: Any) -> Any:
        return _as_range(value)

    @field_validator(
        "arrival_prob", "task_size_kb", "complexity", "deadline_s", "link_rate_mbps",
        "node_fail_rate", "link_fail_rate",
    )
    @classmethod
    def _ordered(cls, value: Range) -> Range:
        lo, hi = value
        if lo > hi:
            raise ValueError(f"range [{lo}, {hi}] has lo > hi")
        return value

    @field_validator("cores", mode="before")
    @classmethod
    def _cores_list(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        return value

    @field_validator("cores")
    @classmethod
    def _cores_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("needs at least one core count")
        if min(value) < 1:
            raise ValueError(f"core counts must be >= 1, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _domains(self) -> "Scenario":
        checks = [
            ("arrival_prob", 0.0 <= self.arrival_prob[0] and self.arrival_prob[1] <= 1.0,
             "is a probability: both ends must lie in [0, 1]"),
            ("task_size_kb", self.task_size_kb[0] > 0, "must be positive"),
            ("complexity", self.complexity[0] > 0, "must be positive"),
            ("deadline_s", self.deadline_s[0] > 0, "must be positive"),
            ("link_rate_mbps", self.link_rate_mbps[0] > 0, "must be positive"),
            ("node_fail_rate", self.node_fail_rate[0] >= 0, "must be >= 0"),
            ("link_fail_rate", self.link_fail_rate[0] >= 0, "must be >= 0"),
        ]
        for field, ok, what in checks:
            if not ok:
                raise ValueError(f"{field} {what}, got {list(getattr(self, field))}")
        for field, (lo, hi) in SUPPORTED.items():
            value = getattr(self, field)
            ends = value if isinstance(value, tuple) else (value,)
            if not all(lo <= x <= hi for x in ends):
                raise ValueError(f"{field} must lie in the supported range [{lo:g}, {hi:g}], "
                                 f"got {list(ends) if len(ends) > 1 else ends[0]}")
        if max(self.cores) > MAX_CORES:
            raise ValueError(f"cores: at most {MAX_CORES} per node are supported, got {max(self.cores)}")
        return self

    # Derived maxima, used to scale observations into [0, 1] (paper IV-B).
    @property
    def max_deadline_s(self) -> float:
        return self.deadline_s[1]


PRESETS: dict[str, dict[str, Any]] = {
    "paper-sim": {
        "name": "paper-sim", "nodes": 20, "slot_s": 0.5, "slots": 100,
        "arrival_prob": [0.0, 1.0], "task_size_kb": [1000, 8000], "complexity": [800, 2400],
        "deadline_s": 4.0, "cores": [4, 8, 16, 20, 24, 28, 32], "core_hz": 3e9,
        "link_rate_mbps": [10, 40], "node_fail_rate": [0.0, 0.1], "link_fail_rate": [0.0, 0.03],
        "queue_coef": 3.0,
    },
}
# The testbed (paper VI): fewer nodes, shorter slots and episodes, smaller and lighter tasks.
PRESETS["paper-testbed"] = {
    **PRESETS["paper-sim"], "name": "paper-testbed", "nodes": 10, "slot_s": 0.1, "slots": 50,
    "task_size_kb": [500, 2500], "complexity": [400, 800], "deadline_s": 1.0,
}


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "scenario"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key (known keys: {', '.join(sorted(Scenario.model_fields))})"
        lines.append(f"{where}: {msg}")
    return "invalid scenario: " + "; ".join(lines)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value`` and read the value as YAML."""
    if "=" not in text:
        raise ScenarioError(f"override {text!r} must look like key=value, e.g. nodes=10")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = parse_yaml(raw, f"override {key}", max_chars=MAX_VALUE_CHARS)
    except YamlInputError as exc:
        raise ScenarioError(str(exc)) from None
    return key, value


def scenario_from_dict(data: dict[str, Any]) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(_format_validation_error(err)) from None


def read_yaml_file(path: Path, what: str) -> Any:
    """The YAML document in ``path``, or a one-line ScenarioError (the file and the line)."""
    try:
        with path.open(encoding="utf-8") as fh:
            text = fh.read(MAX_FILE_CHARS + 1)  # a longer file is refused unread
    except UnicodeDecodeError:
        raise ScenarioError(f"{what} {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    except OSError as exc:
        raise ScenarioError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return parse_yaml(text, f"{what} {path}")
    except YamlInputError as exc:
        raise ScenarioError(str(exc)) from None


def load_scenario(source: str | Path = "paper-sim", overrides: list[str] | None = None) -> Scenario:
    """A preset name or a YAML file, then ``key=value`` overrides, validated."""
    source_str = str(source)
    if source_str in PRESETS:
        data = dict(PRESETS[source_str])
    else:
        path = Path(source_str)
        if not path.is_file():
            raise ScenarioError(
                f"scenario {source_str!r} is neither a preset ({', '.join(PRESETS)}) nor a YAML file"
            )
        loaded = read_yaml_file(path, "scenario file")
        if not isinstance(loaded, dict):
            raise ScenarioError(f"scenario file {path}: expected a mapping of key: value")
        base = loaded.pop("preset", None)
        if base is not None:
            if base not in PRESETS:
                raise ScenarioError(f"scenario file {path}: unknown preset {base!r}")
            data = {**PRESETS[base], **loaded}
        else:
            data = loaded
        data["name"] = loaded.get("name", path.stem)
    for text in overrides or []:
        key, value = parse_override(text)
        data[key] = value
    return scenario_from_dict(data)
