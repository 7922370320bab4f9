"""The commutator tables of the aggregation stage, computed from run directories alone.

`commutator_rows(run_dir, run_id)` gives one run's rows of the `commutators` table: one row per
measurement step x sample, with run_id first, every column of commutators.parquet (the causal
basis: README, "SGD commutators") and the same projections onto the basis of the whole finished
trajectory, suffixed `_final`: basis_dim_final, rho_exec_final, outside_energy_final,
rho_random_final, exec_random_ratio_final. Those exist only for samples whose delta was saved
(commutator.save_deltas) and are NaN elsewhere. A run without commutator records gives no rows.

`commutator_summary(commutators, runs, condition_columns)` reduces the concatenated rows of many runs
to one row per condition x phase, where phase is early (each run's first 20% of measurement steps
with a causal basis, at least one), late (its last 20%) or all (every step with a basis). Each run contributes its median of every quantity over
the phase's samples; the row holds their mean (`<q>_mean`) and sd (`<q>_sd`, ddof 1) over the runs
of the condition (its seeds), and n_runs. `runs` needs the columns run_id and condition_columns,
and should hold only the runs that enter the statistics (completed ones): rows of other runs are dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..rundir.commutators import load_commutators, load_deltas, read_meta
from ..rundir.trajectory import load_trajectory
from ..seeding import generator
from .basis import trajectory_basis
from .projection import projection_stats

PROJECTIONS = ("basis_dim", "rho_exec", "outside_energy", "rho_random", "exec_random_ratio")
FINAL = tuple(f"{name}_final" for name in PROJECTIONS)
SUMMARY_QUANTITIES = ("defect", "rho_exec", "rho_random", "exec_random_ratio", "outside_energy")
SUMMARY_QUANTITIES_FINAL = tuple(f"{name}_final" for name in SUMMARY_QUANTITIES[1:])


def commutator_rows(run_dir: str | os.PathLike, run_id: str | None = None) -> pd.DataFrame:
    """One run's `commutators` rows; run_id defaults to the run directory's path."""
    run_dir = Path(run_dir)
    rows = load_commutators(run_dir)
    rows.insert(0, "run_id", run_id if run_id is not None else str(run_dir))
    final = _final_projections(run_dir)
    rows = rows.merge(final, on=["step", "sample"], how="left")
    rows["basis_dim_final"] = rows["basis_dim_final"].astype("Int64")
    return rows


def _final_projections(run_dir: Path) -> pd.DataFrame:
    """(step, sample, *FINAL) for every saved delta, on the basis of the whole trajectory."""
    meta = read_meta(run_dir)
    empty = pd.DataFrame({"step": pd.Series(dtype="int64"), "sample": pd.Series(dtype="int64"),
                          **{name: pd.Series(dtype="float64") for name in FINAL}})
    if meta is None or meta["save_deltas"] == "none":
        return empty
    index, deltas = load_deltas(run_dir)
    if len(index) == 0:
        return empty
    trajectory = load_trajectory(run_dir)
    basis, dims = trajectory_basis([trajectory.matrix(layer, name) for layer, name in trajectory.keys()], meta["basis_k"])
    frames = []
    for step in np.unique(index[:, 0]):
        at = np.flatnonzero(index[:, 0] == step)
        delta = torch.from_numpy(np.asarray(deltas[at])).reshape(len(at), len(basis), -1)  # (S, n_layers*4, d*d)
        # The measurement's own random-basis stream: the same random subspaces as the causal rows.
        gen = generator(meta["seed"], f"commutator/step={int(step)}/random_basis")
        stats = projection_stats(delta, basis, dims, meta["random_trials"], gen)
        frames.append(pd.DataFrame({
            "step": index[at, 0], "sample": index[at, 1], "basis_dim_final": int(dims.sum()),
            **{f"{name}_final": value.numpy() for name, value in stats.items()},
        }))
    return pd.concat(frames, ignore_index=True)[["step", "sample", *FINAL]]


def commutator_summary(commutators: pd.DataFrame, runs: pd.DataFrame, condition_columns: list[str]) -> pd.DataFrame:
    """Per condition and phase (early, late, all): mean and sd over runs of each run's median quantity."""
    quantities = [q for q in (*SUMMARY_QUANTITIES, *SUMMARY_QUANTITIES_FINAL) if q in commutators.columns]
    conditions = list(condition_columns)
    rows = commutators.merge(runs[["run_id", *conditions]], on="run_id", how="inner")
    # Measurements before the first snapshot after step 0 have no causal basis (NaN projections);
    # phases count only measurements with a basis, so a short run's "early" is not all NaN.
    rows = rows[rows["basis_dim"] > 0]
    # Rank each run's measurement steps 1..n; early = the first n/5 of them, late = the last.
    rank = rows.groupby("run_id")["step"].rank(method="dense")
    n_steps = rows.groupby("run_id")["step"].transform("nunique")
    n_phase = (n_steps // 5).clip(lower=1)  # 20%, at least one step
    phases = pd.concat([
        rows.assign(phase="early")[rank <= n_phase],
        rows.assign(phase="late")[rank > n_steps - n_phase],
        rows.assign(phase="all"),
    ], ignore_index=True)
    keys = [*conditions, "phase"]
    per_run = phases.groupby(["run_id", *keys], dropna=False)[quantities].median().reset_index()
    grouped = per_run.groupby(keys, dropna=False, sort=True)
    summary = grouped[quantities].agg(["mean", "std"])
    summary.columns = [f"{q}_{'sd' if stat == 'std' else stat}" for q, stat in summary.columns]
    summary.insert(0, "n_runs", grouped["run_id"].nunique())
    return summary.reset_index()
