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

from itertools import combinations

import numpy as np
import pandas as pd

from ..config.schema import AggregateConfig
from ..geometry.subspaces import orthonormal_basis, principal_cosines, random_mean_squared_cosine
from .effective_rank import NAME as EFFECTIVE_RANK, basis_key
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
        keys = [k for k in bases[group["run_id"].iloc[0]]]  # layer/matrix in the reducer's order
        for key in keys:
            layer, matrix = key.split("/")
            for a, b in combinations(group["run_id"], 2):
                basis_a, basis_b = bases[a].get(key), bases[b].get(key)
                if basis_a is None or basis_b is None or basis_a.shape[1] == 0 or basis_b.shape[1] == 0:
                    continue  # a matrix that never moved has no subspace
                cosines = principal_cosines(basis_a, basis_b, orthonormal=True)
                k_a, k_b, dim = basis_a.shape[1], basis_b.shape[1], basis_a.shape[0]
                records.append({
                    **condition, "layer": int(layer), "matrix": matrix, "run_id_a": a, "run_id_b": b,
                    "seed_a": seeds[a], "seed_b": seeds[b], "k_a": k_a, "k_b": k_b, "dim": dim,
                    "n_angles": len(cosines), "mean_squared_cosine": float((cosines**2).mean()),
                    "max_cosine": float(cosines.max()), "random_expectation": random_mean_squared_cosine(k_a, k_b, dim),
                })
    return typed_frame(records, {c: runs[c].dtype for c in conditions} | COLUMNS)


SUMMARY = Summary(name="subspace_alignment", build=build)
