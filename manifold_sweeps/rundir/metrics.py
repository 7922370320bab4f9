"""`metrics.parquet`: the run's training and evaluation metrics in long form.

Columns: step (int64), metric (str), m (Int64, null when not per-m), layer (Int64, null when not
per-layer), value (float64). Metrics written by training:

    train_loss         mean training loss over the steps since the previous evaluation (m, layer null)
    eval_loss          cross-entropy on the fixed held-out set of that m
    eval_accuracy      accuracy on the fixed held-out set of that m
    attention_entropy  entropy (nats) of the readout position's attention row in `layer`,
                       mean over heads and held-out examples of that m

The file is rewritten atomically (whole) on every flush.
"""

from __future__ import annotations

import os
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
        if keep_before_step is not None and self.path.exists():
            old = load_metrics(run_dir)
            old = old[old["step"] < keep_before_step]
            self.rows = [
                {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in old.to_dict("records")
            ]

    def add(self, step: int, metric: str, value: float, m: int | None = None, layer: int | None = None) -> None:
        self.rows.append({"step": int(step), "metric": metric, "m": m, "layer": layer, "value": float(value)})

    def flush(self) -> None:
        with atomic_path(self.path) as tmp:
            _frame(self.rows).to_parquet(tmp, index=False)
