"""The `effective_rank` table (per run) and `effective_rank_summary` (over seeds).

effective_rank: one row per run x layer x matrix x window. Measures (defined in
`manifold_sweeps/geometry/spectrum.py`, the paper's eq. 1-2 over the full spectrum): r90, r95, r99,
participation_ratio, pc1_fraction; window (`whole`, `expanding`, `sliding`, see `windows.py`) with
window_start_fraction, window_end_fraction (of training), window_start_step, window_end_step (the
first and last snapshot inside), n_snapshots; reference (`mean` or `displacement`). A matrix that
never moved in a window has no measures (nulls).

The reducer also keeps, per layer and matrix, the top principal directions of the whole trajectory
(k = that matrix's r90, or --alignment-k) for `subspace_alignment`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..config.schema import AggregateConfig
from ..geometry.spectrum import MEASURES, SnapshotGram, spectrum_measures
from ..rundir.trajectory import META_FILE, STEPS_FILE, TRAJECTORY_FILE, load_trajectory
from .reducers import Reducer, RunOutput, Summary, typed_frame
from .runs import condition_columns
from .windows import trajectory_windows

NAME = "effective_rank"
COLUMNS = {
    "layer": "int64",
    "matrix": "string",
    "window": "string",
    "window_start_fraction": "float64",
    "window_end_fraction": "float64",
    "window_start_step": "int64",
    "window_end_step": "int64",
    "n_snapshots": "int64",
    "r90": "Int64",
    "r95": "Int64",
    "r99": "Int64",
    "participation_ratio": "float64",
    "pc1_fraction": "float64",
    "reference": "string",
}
WINDOW_KEYS = ["window", "window_start_fraction", "window_end_fraction", "window_start_step", "window_end_step"]
STAT_COLUMNS = ["mean", "sd", "min", "max", "count"]


def basis_key(layer: int, matrix: str) -> str:
    return f"{layer}/{matrix}"


def reduce_run(run_dir: Path, row: dict, cfg: AggregateConfig) -> RunOutput:
    trajectory = load_trajectory(run_dir)
    total = row.get("total_steps") or int(trajectory.steps[-1])
    windows = trajectory_windows(trajectory.steps, total, cfg.expanding_windows, cfg.sliding_width, cfg.sliding_stride)
    reference = cfg.reference.value
    records, bases = [], {}
    for layer, matrix in trajectory.keys():
        gram = SnapshotGram(trajectory.matrix(layer, matrix))  # one read of this matrix's snapshots
        k = cfg.alignment_k or 0
        measured = {}  # windows holding the same snapshots (expanding 100% = whole) share one eigensolve
        for window in windows:
            span = (window.rows.start, window.rows.stop)
            if span not in measured:
                measured[span] = spectrum_measures(gram.eigenvalues(window.rows, reference))
            measures = measured[span]
            steps = trajectory.steps[window.rows]
            records.append({
                "layer": layer, "matrix": matrix, "window": window.kind,
                "window_start_fraction": window.start_fraction, "window_end_fraction": window.end_fraction,
                "window_start_step": int(steps[0]), "window_end_step": int(steps[-1]), "n_snapshots": len(steps),
                **measures, "reference": reference,
            })
            if window.kind == "whole":
                k = cfg.alignment_k or measures["r90"] or 0
        bases[basis_key(layer, matrix)] = gram.principal_directions(k, reference=reference).astype(np.float32)
    return RunOutput({NAME: typed_frame(records, COLUMNS)}, bases)


def build_summary(tables: dict[str, pd.DataFrame], arrays, cfg: AggregateConfig) -> pd.DataFrame:
    """Mean, sd (n-1), min, max and count over seeds of each measure, per condition x layer x matrix x window.

    Long form: one row per group and measure (column `measure`); count is the number of runs with
    a value. Conditions are the config columns that vary across the completed runs (`condition_columns`).
    """
    runs = tables["runs"]
    runs = runs[runs["state"] == "completed"]
    conditions = condition_columns(runs)
    keys = [*conditions, "layer", "matrix", *WINDOW_KEYS, "measure"]
    columns = {c: runs[c].dtype for c in conditions} | {k: v for k, v in COLUMNS.items() if k in keys}
    if tables[NAME].empty:
        return pd.DataFrame(columns=[*keys, *STAT_COLUMNS]).astype(columns | {"measure": "string"})
    merged = tables[NAME].merge(runs[["run_id", *conditions]], on="run_id", how="inner")
    long = merged.melt(id_vars=[*conditions, "layer", "matrix", *WINDOW_KEYS], value_vars=list(MEASURES),
                       var_name="measure", value_name="value")
    long["value"] = long["value"].astype("float64")
    # sort=False keeps the reducer's order (layer, W_Q..W_O, windows); conditions are sorted after.
    summary = (
        long.groupby(keys, dropna=False, sort=False)["value"]
        .agg(mean="mean", sd="std", min="min", max="max", count="count")
        .reset_index()
    )
    summary["measure"] = summary["measure"].astype("string")
    if conditions:
        summary = summary.sort_values(conditions, kind="stable", na_position="last")
    return summary.reset_index(drop=True)


REDUCER = Reducer(
    name=NAME, version=1, inputs=(TRAJECTORY_FILE, STEPS_FILE, META_FILE), tables={NAME: COLUMNS}, reduce=reduce_run,
)
SUMMARY = Summary(name="effective_rank_summary", version=1, build=build_summary)
