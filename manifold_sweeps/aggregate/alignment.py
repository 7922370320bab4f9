"""The `subspace_alignment` table: do seeds of one condition find the same subspace?

For every pair of completed runs (seeds) of one condition, per layer and matrix: the principal
angles between their whole-trajectory top-k principal subspaces in R^D (D = d^2), with k_a, k_b
each run's r90 of that matrix (or --alignment-k for both). Columns: the condition columns, layer,
matrix, run_id_a, run_id_b, seed_a, seed_b, k_a, k_b, dim (D), n_angles (min(k_a, k_b)),
mean_squared_cosine (mean cos^2 over the angles: 1 = same subspace, 0 = orthogonal), max_cosine
(the smallest angle's cosine), random_expectation (max(k_a, k_b) / D: the expected
mean_squared_cosine of a uniformly random subspace, derived in `geometry/subspaces.py`).

The paper claims the dimension is stable across seeds while the orientation is not: then
mean_squared_cosine sits near random_expectation while r90 agrees.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config.schema import AggregateConfig
from ..geometry.subspaces import orthonormal_basis, pairwise_principal_cosines, random_mean_squared_cosine
from .effective_rank import NAME as EFFECTIVE_RANK
from .reducers import ArrayLoader, Summary, typed_frame
from .runs import condition_columns

COLUMNS = {
    "layer": "int64", "matrix": "string", "run_id_a": "string", "run_id_b": "string", "seed_a": "Int64",
    "seed_b": "Int64", "k_a": "int64", "k_b": "int64", "dim": "int64", "n_angles": "int64",
    "mean_squared_cosine": "float64", "max_cosine": "float64", "random_expectation": "float64",
}


def _orthonormal(bases: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Once per run, not once per pair; float64, as the stored float32 columns are orthonormal to 1e-7 only.
    return {key: orthonormal_basis(basis) for key, basis in bases.items()}


def _pairs(runs: pd.DataFrame, conditions: list[str]):
    """(condition values, the condition's runs sorted by seed) for conditions with at least two runs."""
    groups = runs.groupby(conditions, dropna=False, sort=False) if conditions else [((), runs)]
    for values, group in groups:
        if len(group) >= 2:
            values = values if isinstance(values, tuple) else (values,)
            yield dict(zip(conditions, values)), group.sort_values(["seed", "run_id"], kind="stable")


def build(tables: dict[str, pd.DataFrame], arrays: ArrayLoader, cfg: AggregateConfig) -> pd.DataFrame:
    runs = tables["runs"]
    runs = runs[runs["state"] == "completed"]
    conditions = condition_columns(runs)
    records = []
    for condition, group in _pairs(runs, conditions):
        # One condition's bases at a time: memory stays bounded by the largest condition.
        bases = {run_id: _orthonormal(arrays(run_id, EFFECTIVE_RANK)) for run_id in group["run_id"]}
        seeds = dict(zip(group["run_id"], group["seed"]))
        keys = list(bases[group["run_id"].iloc[0]])  # layer/matrix in the reducer's order
        for key in keys:
            layer, matrix = key.split("/")
            # A matrix that never moved in a run has no subspace there: that run has no pairs for it.
            present = [rid for rid in group["run_id"] if bases[rid].get(key) is not None and bases[rid][key].shape[1]]
            if len(present) < 2:
                continue
            cosines = pairwise_principal_cosines([bases[rid][key] for rid in present])
            for (i, j), cos in cosines.items():
                a, b = present[i], present[j]
                (dim, k_a), k_b = bases[a][key].shape, bases[b][key].shape[1]
                records.append({
                    **condition, "layer": int(layer), "matrix": matrix, "run_id_a": a, "run_id_b": b,
                    "seed_a": seeds[a], "seed_b": seeds[b], "k_a": k_a, "k_b": k_b, "dim": dim,
                    "n_angles": len(cos), "mean_squared_cosine": float(np.mean(cos**2)),
                    "max_cosine": float(cos.max()), "random_expectation": random_mean_squared_cosine(k_a, k_b, dim),
                })
    return typed_frame(records, {c: runs[c].dtype for c in conditions} | COLUMNS)


SUMMARY = Summary(name="subspace_alignment", version=1, build=build)
