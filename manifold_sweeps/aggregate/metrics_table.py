"""The `metrics` table: every run's training metrics (its metrics.parquet) in one long-form table.

Columns (the stage adds run_id): step, metric, m, layer, value, exactly as in a run's
metrics.parquet (README, "The run directory"): eval_accuracy and eval_loss per m,
attention_entropy per m and layer, train_loss. The report draws accuracy per m and attention
entropy over training from it, across runs.

It is registered in registry.py as a reducer, cached per run like the others.
"""

from __future__ import annotations

import os

import pandas as pd

from ..rundir.metrics import COLUMNS, METRICS_FILE, load_metrics

NAME = "metrics"
__all__ = ["COLUMNS", "METRICS_FILE", "NAME", "metrics_rows"]


def metrics_rows(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The run's metrics, sorted by step, metric, m and layer (empty, with the columns, when none were written)."""
    frame = load_metrics(run_dir)
    return frame.sort_values(["step", "metric", "m", "layer"], kind="stable", na_position="first").reset_index(drop=True)
