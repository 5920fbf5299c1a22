"""Paired differences between reward credits from ``scripts/learner_screen.py`` outputs.

For each network and pair of learners, the per-episode success rates on the same VALIDATION
episodes after 400 online episodes, averaged over the training seeds both have, then the paired
mean difference and its 95% CI (``o2o.core.metrics.mean_ci95``). Files are looked up as
``DIR/TEACHER-CREDIT-netK-sSEED.json`` (the names used in docs/learner.md, "Against the tuned
same-information rule").

    PYTHONPATH=src python scripts/credit_paired.py DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from o2o.core.metrics import mean_ci95

PAIRS = [("slack-reliable-tuned-cf-w1", "slack-reliable-tuned-node"),
         ("slack-reliable-tuned-cf-w1", "slack-reliable-tuned-decision"),
         ("spread-cf-w0.5", "spread-node")]


def rates(path: Path, point: int = 400) -> np.ndarray | None:
    if not path.exists():
        return None
    for c in json.loads(path.read_text())["curve"]:
        if c["episodes"] == point:
            return np.array(c["per_episode"])
    return None


def main(folder: str) -> None:
    root = Path(folder)
    for a, b in PAIRS:
        for net in (0, 1, 2):
            pa, pb, used = [], [], []
            for seed in (0, 1):
                x, y = rates(root / f"{a}-net{net}-s{seed}.json"), rates(root / f"{b}-net{net}-s{seed}.json")
                if x is not None and y is not None:
                    pa.append(x)
                    pb.append(y)
                    used.append(seed)
            if used:
                d, lo, hi = mean_ci95(np.mean(pa, 0) - np.mean(pb, 0))
                print(f"net{net} {a} - {b} (training seeds {used}): {d:+.4f} [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: credit_paired.py DIR (the folder of learner_screen.py outputs)")
    main(sys.argv[1])
