"""Named, disjoint ranges of episode seeds.

An episode is fixed by its seed (``o2o.core.episodes``), so which seeds a phase uses decides
what it has seen. Every phase takes its seeds from its own range, and the ranges never overlap:
nothing is evaluated on an episode it was trained or tuned on.

=============  ===========================  ====================================================
range          seeds                        used for
=============  ===========================  ====================================================
``LOGS``       0 .. 899 999                 heuristic task logs (``o2o collect``, the main job's
                                            offline data), and ``o2o simulate`` by default
``VALIDATION`` 900 000 .. 999 999           learning-curve points and choosing settings
``TEST``       1 000 000 .. 1 999 999       held-out evaluation of every final comparison
``online(k)``  10^9 (k+1) .. 10^9 (k+2) - 1  online training episodes of training seed k
=============  ===========================  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from o2o.core.errors import UserError


@dataclass(frozen=True)
class SeedRange:
    name: str
    start: int
    stop: int      # exclusive

    def take(self, count: int, offset: int = 0) -> list[int]:
        """``count`` consecutive seeds from ``start + offset``; refuses to leave the range."""
        first = self.start + int(offset)
        if count < 0 or offset < 0 or first + count > self.stop:
            raise UserError(f"{count} episodes from offset {offset} do not fit the {self.name} "
                            f"seed range [{self.start}, {self.stop})")
        return list(range(first, first + int(count)))

    def __contains__(self, seed: int) -> bool:
        return self.start <= seed < self.stop


LOGS = SeedRange("logs", 0, 900_000)
VALIDATION = SeedRange("validation", 900_000, 1_000_000)
TEST = SeedRange("test", 1_000_000, 2_000_000)
ONLINE_STRIDE = 1_000_000_000


def online(training_seed: int) -> SeedRange:
    """The online training episodes of one training seed (the same for O2O-DRL and
    online-only, so both baselines see the same episodes)."""
    k = int(training_seed)
    if k < 0:
        raise UserError(f"training seeds are >= 0, got {k}")
    return SeedRange(f"online (training seed {k})", ONLINE_STRIDE * (k + 1), ONLINE_STRIDE * (k + 2))


def _check_disjoint(ranges: list[SeedRange]) -> None:
    ordered = sorted(ranges, key=lambda r: r.start)
    for a, b in zip(ordered, ordered[1:]):
        if a.stop > b.start:
            raise AssertionError(f"seed ranges {a.name} and {b.name} overlap")


_check_disjoint([LOGS, VALIDATION, TEST, online(0)])
