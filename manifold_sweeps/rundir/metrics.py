"""`metrics.parquet`: the run's training and evaluation metrics in long form.

Columns: step (int64), metric (str), m (Int64, null when not per-m), layer (Int64, null when not
per-layer), value (float64). Metrics written by training:

    train_loss         mean training loss over the steps since the previous evaluation (m, layer null)
    eval_loss          cross-entropy on the fixed held-out set of that m
    eval_accuracy      accuracy on the fixed held-out set of that m
    attention_entropy  entropy (nats) of the readout position's attention row in `layer`,
                       mean over heads and held-out examples of that m

The file is rewritten atomically (whole) on a flush that has rows to add. Training flushes at every
checkpoint (which needs the rows before it on disk), when a run ends, and on progress lines at most
once a minute: a rewrite costs 6 to 9 ms at the end of a `paper` run (697 rows), so a 120-run pack
rewriting every run's file on every 10 s progress line stood still for 7% to 11% of its time late
in training.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from .atomic import atomic_path

METRICS_FILE = "metrics.parquet"
COLUMNS = {"step": "int64", "metric": "string", "m": "Int64", "layer": "Int64", "value": "float64"}


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype(COLUMNS)


def load_metrics(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The run's metrics table (empty with the right columns when none were written)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return _frame([])
    return pd.read_parquet(path).astype(COLUMNS)


class MetricsLog:
    def __init__(self, run_dir: str | os.PathLike, keep_before_step: int | None = None):
        """Opens the run's metrics; with keep_before_step, rows from that step on are dropped (resume)."""
        self.path = Path(run_dir) / METRICS_FILE
        self.rows: list[dict] = []
        # Rows are only ever appended, so their count tells whether the file is behind. None: the
        # file is not known to hold these rows (a resume drops the file's rows from its step on).
        self._written: int | None = None
        self._written_at = float("-inf")
        if keep_before_step is not None and self.path.exists():
            old = load_metrics(run_dir)
            old = old[old["step"] < keep_before_step]
            self.rows = [
                {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in old.to_dict("records")
            ]

    def add(self, step: int, metric: str, value: float, m: int | None = None, layer: int | None = None) -> None:
        self.rows.append({"step": int(step), "metric": metric, "m": m, "layer": layer, "value": float(value)})

    def flush(self) -> None:
        """Write the file if it lacks rows."""
        if self._written == len(self.rows):
            return
        with atomic_path(self.path) as tmp:
            _frame(self.rows).to_parquet(tmp, index=False)
        self._written, self._written_at = len(self.rows), time.monotonic()

    def flush_if_older(self, seconds: float) -> None:
        """flush(), if the last write is at least `seconds` old (cheap to call on every progress line)."""
        if time.monotonic() - self._written_at >= seconds:
            self.flush()
