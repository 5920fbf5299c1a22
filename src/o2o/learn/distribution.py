"""What a generalist (``o2o.learn.generalist``) is trained across, and its optional offline
phase: the distribution of networks, sizes and scenario ranges it draws its rounds from, and
the teacher plan. Kept apart from the training code (and from torch), so the command line can
show their defaults without loading the learner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from o2o.core.errors import UserError
from o2o.core.scenario import Scenario, scenario_from_dict

FIRST_TRAINING_NETWORK = 1000          # network seeds 0..999 are kept for evaluation
NETWORK_SEEDS = (1000, 1999)           # the default training network seeds
NODES = (10, 50)                       # figure 6's range of N
# The swept fields and the interval of the upper end of their range (figures 5a-c).
UPPER_ENDS: dict[str, tuple[float, float]] = {"task_size_kb": (4000.0, 12000.0),
                                              "arrival_prob": (0.6, 1.0),
                                              "node_fail_rate": (0.1, 0.3)}
LEVELS = 5                             # upper ends drawn among 5 values, as the figures' points


@dataclass(frozen=True)
class Distribution:
    """What a generalist is trained across: N in ``nodes``, network seeds in ``network_seeds``
    and, for each field of ``upper_ends``, the interval its range's upper end is drawn from,
    around a ``base`` scenario (every other field is the base's)."""

    base: Scenario
    nodes: tuple[int, int] = NODES
    network_seeds: tuple[int, int] = NETWORK_SEEDS
    upper_ends: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(UPPER_ENDS))

    def check(self, options: dict[str, str] | None = None) -> None:
        """Refuse (``UserError``, naming ``options[what]``, the command-line option) a range that
        is empty or unordered, N or a network seed outside what is allowed, and an upper end
        below the base scenario's lower end; a drawn scenario that is not valid is refused by
        ``scenario``."""
        name = (options or {}).get
        lo, hi = self.nodes
        if lo > hi:
            raise UserError(f"{name('nodes', 'nodes')} {lo} {hi}: give LO <= HI")
        s_lo, s_hi = self.network_seeds
        if s_lo > s_hi:
            raise UserError(f"{name('network_seeds', 'network_seeds')} {s_lo} {s_hi}: give LO <= HI")
        if s_lo < FIRST_TRAINING_NETWORK:
            raise UserError(f"{name('network_seeds', 'network_seeds')} {s_lo} {s_hi}: network seeds below "
                            f"{FIRST_TRAINING_NETWORK} are kept for evaluation (the docs' tables use 0, 1 "
                            f"and 2); give training network seeds >= {FIRST_TRAINING_NETWORK}")
        for what, (u_lo, u_hi) in self.upper_ends.items():
            option = name(what, what)
            if not (np.isfinite(u_lo) and np.isfinite(u_hi)):
                raise UserError(f"{option} {u_lo:g} {u_hi:g}: give finite numbers")
            if u_lo > u_hi:
                raise UserError(f"{option} {u_lo:g} {u_hi:g}: give LO <= HI")
            base_lo = getattr(self.base, what)[0]
            if u_lo < base_lo:
                raise UserError(f"{option} {u_lo:g} {u_hi:g}: the upper end of {what} must be at least "
                                f"the scenario's lower end {base_lo:g}")
        for n in self.nodes:  # the extremes as scenarios: N, and the widest ranges, valid
            try:
                self.scenario(n, {what: hi for what, (_, hi) in self.upper_ends.items()})
            except UserError as err:
                options = ", ".join(name(k, k) for k in ("nodes", *self.upper_ends))
                raise UserError(f"the widest scenario drawn ({options} at their largest) is not valid: "
                                f"{err}") from None

    def scenario(self, nodes: int, upper: dict[str, float]) -> Scenario:
        """The base scenario with ``nodes`` nodes and the given upper ends (refused with the
        scenario's own message if not valid)."""
        data = self.base.model_dump()
        data["nodes"] = int(nodes)
        for what, value in upper.items():
            data[what] = [getattr(self.base, what)[0], float(value)]
        return scenario_from_dict(data)

    def widest(self) -> Scenario:
        """The scenario with the largest N and every upper end at its largest."""
        return self.scenario(self.nodes[1], {what: hi for what, (_, hi) in self.upper_ends.items()})

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """One round's draw: ``nodes``, ``network_seed`` and each field's upper end."""
        out: dict[str, Any] = {"nodes": int(rng.integers(self.nodes[0], self.nodes[1] + 1)),
                               "network_seed": int(rng.integers(self.network_seeds[0],
                                                                self.network_seeds[1] + 1))}
        for what, (lo, hi) in self.upper_ends.items():
            out[what] = float(np.linspace(lo, hi, LEVELS)[rng.integers(LEVELS)])
        return out


@dataclass(frozen=True)
class TeacherPlan:
    """The offline phase of a generalist: ``rule`` tuned and logged on ``networks`` networks
    drawn from the distribution (``episodes`` logged episodes each, the rule tuned on
    ``tune_episodes`` validation episodes of that network, on its ``grid``: ``shipped``, the grid
    of ``o2o tune``, or ``wide``), then ``steps`` offline steps."""

    rule: str = "slack-reliable"
    networks: int = 12
    episodes: int = 30
    tune_episodes: int = 5
    steps: int = 3000
    grid: str = "shipped"

    def check(self) -> None:
        from o2o.schedulers import TUNABLE

        if self.rule not in TUNABLE:
            raise UserError(f"--teacher {self.rule}: the teacher is tuned on each network; give one of "
                            f"{', '.join(TUNABLE)}")
        if self.grid not in ("shipped", "wide"):
            raise UserError(f"--teacher-grid {self.grid}: give shipped (the grid of o2o tune) or wide")
        for what, value in (("--teacher-networks", self.networks), ("--teacher-episodes", self.episodes),
                            ("--teacher-tune-episodes", self.tune_episodes), ("--offline-steps", self.steps)):
            if int(value) < 1:
                raise UserError(f"{what} {value}: give a whole number >= 1")
