"""Training metrics: one JSON object per line (``metrics.jsonl``) and TensorBoard scalars.

Every record is ``{"phase": ..., "step": ..., "time_s": ..., <metric>: <number>, ...}``; the
same numbers go to TensorBoard as ``{phase}/{metric}`` at ``step``. A tracker without a folder
only keeps the records in memory (``records``), which is what the tests and the pipeline's
curves read. The folder is made with the first record, so a run refused before it trains
(a data set that does not fit its settings, ...) leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from o2o.core.metrics import json_safe


class Tracker:
    def __init__(self, folder: str | Path | None = None, tensorboard: bool = True):
        self.records: list[dict[str, Any]] = []
        self._start = time.perf_counter()
        self._file = None
        self._tb = None
        self._folder = None if folder is None else Path(folder)
        self._tensorboard = tensorboard

    def _open(self) -> None:
        folder, self._folder = self._folder, None
        folder.mkdir(parents=True, exist_ok=True)
        self._file = open(folder / "metrics.jsonl", "a", encoding="utf-8")
        if self._tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(folder / "tensorboard"))

    def log(self, phase: str, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        record = {"phase": phase, "step": int(step),
                  "time_s": round(time.perf_counter() - self._start, 3)}
        for k, v in metrics.items():
            record[k] = _plain(v)
        self.records.append(record)
        if self._folder is not None:
            self._open()
        if self._file is not None:
            self._file.write(json.dumps(json_safe(record)) + "\n")
            self._file.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("phase", "step") and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(f"{phase}/{k}", v, int(step))
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plain(v: Any) -> Any:
    """Numbers as Python floats/ints (numpy and torch scalars included), the rest as is."""
    if hasattr(v, "item") and callable(v.item):
        try:
            v = v.item()
        except (ValueError, RuntimeError):
            return v
    return v
