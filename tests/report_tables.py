"""Small synthetic aggregation tables with the real column names, for the report's tests.

Each builder takes the runs and functions that say what a value should be, so a test can build
tables that make a claim true or false. Column names follow the aggregation stage: runs,
effective_rank, effective_rank_summary, subspace_alignment (aggregate/), commutators and
commutator_summary (commutator/tables.py), metrics (aggregate/metrics_table.py).
"""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd

from manifold_sweeps.report.data import ReportData

MATRICES = ("W_Q", "W_K", "W_V", "W_O")
RUN_DEFAULTS = {
    "state": "completed", "reason": None, "experiment": "demo", "task": "modadd", "model": "attention_only",
    "optimizer": "adamw", "curriculum": "single", "train": "default", "wall_time_s": 10.0, "last_step": 1000,
    "total_steps": 1000, "n_snapshots": 101, "task.op": "add", "task.modulus": 8, "task.seq_len": 16, "task.m": 2,
    "model.n_layers": 2, "model.n_heads": 2, "model.d_model": 16, "model.mlp_ratio": 0, "optimizer.name": "adamw",
    "optimizer.lr": 3e-4, "curriculum.kind": "single", "curriculum.ms": "[1, 2]", "train.steps": 1000,
    "train.batch_size": 32, "train.snapshot_every": 10,
}
STEPS = list(range(0, 1001, 100))
FRACTIONS = [round(0.1 * i, 9) for i in range(1, 11)]


def evaluated_ms(run: pd.Series) -> list[int]:
    return [int(run["task.m"])] if run["curriculum.kind"] == "single" else json.loads(run["curriculum.ms"])


def runs_table(conditions: list[dict], seeds=(0, 1, 2), accuracy: float = 0.95) -> pd.DataFrame:
    """One completed run per condition x seed; `conditions` are dicts of runs-table columns."""
    rows = []
    for condition in conditions:
        for seed in seeds:
            row = {**RUN_DEFAULTS, **condition, "seed": seed}
            row["run_id"] = ",".join(f"{k}={v}" for k, v in condition.items()) + f",seed={seed}"
            row["run_dir"] = f"/nowhere/{row['run_id']}"
            for m in evaluated_ms(pd.Series(row)):
                row[f"final_accuracy_m{m}"] = accuracy
            rows.append(row)
    return pd.DataFrame(rows)


def report_data(runs: pd.DataFrame, **tables: pd.DataFrame) -> ReportData:
    """ReportData with the conditions the aggregation would find: config columns varying across completed runs."""
    completed = runs[runs["state"] == "completed"]
    outcome = {"run_id", "run_dir", "state", "reason", "seed", "wall_time_s", "last_step", "total_steps", "n_snapshots"}
    conditions = [c for c in runs.columns if c not in outcome and not c.startswith("final_accuracy_")
                  and completed[c].nunique(dropna=False) > 1]
    return ReportData(runs, conditions, tables)


def _completed(runs: pd.DataFrame):
    return (run for _, run in runs[runs["state"] == "completed"].iterrows())


def effective_rank_table(runs: pd.DataFrame, r90, expanding=None, n_layers: int = 2, snapshots: int = 101) -> pd.DataFrame:
    """r90(run, layer, matrix) for the whole window; expanding(run, layer, matrix, fraction) for expanding windows
    (default: the whole-window value)."""
    rows = []
    for run in _completed(runs):
        for layer in range(n_layers):
            for matrix in MATRICES:
                whole = int(r90(run, layer, matrix))
                windows = [("whole", 1.0, whole)]
                windows += [("expanding", f, int(expanding(run, layer, matrix, f)) if expanding else whole) for f in FRACTIONS]
                for kind, fraction, value in windows:
                    n = int(round(fraction * (snapshots - 1))) + 1
                    rows.append({
                        "run_id": run["run_id"], "layer": layer, "matrix": matrix, "window": kind,
                        "window_start_fraction": 0.0, "window_end_fraction": fraction, "window_start_step": 0,
                        "window_end_step": int(fraction * 1000), "n_snapshots": n, "r90": value, "r95": value + 1,
                        "r99": value + 2, "participation_ratio": value * 0.8, "pc1_fraction": 0.5, "reference": "mean",
                    })
    frame = pd.DataFrame(rows)
    return frame.astype({"r90": "Int64", "r95": "Int64", "r99": "Int64"})


def effective_rank_summary(runs: pd.DataFrame, er: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    window = ["window", "window_start_fraction", "window_end_fraction", "window_start_step", "window_end_step"]
    merged = er.merge(runs[["run_id", *conditions]], on="run_id")
    long = merged.melt(id_vars=[*conditions, "layer", "matrix", *window],
                       value_vars=["r90", "r95", "r99", "participation_ratio", "pc1_fraction"], var_name="measure")
    long["value"] = long["value"].astype("float64")
    return (long.groupby([*conditions, "layer", "matrix", *window, "measure"], sort=False)["value"]
            .agg(mean="mean", sd="std", min="min", max="max", count="count").reset_index())


def alignment_table(runs: pd.DataFrame, conditions: list[str], cos2, random: float = 0.001, n_layers: int = 2) -> pd.DataFrame:
    """cos2(layer, matrix): the mean squared cosine of every seed pair."""
    rows = []
    completed = runs[runs["state"] == "completed"]
    groups = completed.groupby(conditions) if conditions else [((), completed)]
    for _, group in groups:
        for (_, a), (_, b) in combinations(group.iterrows(), 2):
            for layer in range(n_layers):
                for matrix in MATRICES:
                    rows.append({
                        **{c: a[c] for c in conditions}, "layer": layer, "matrix": matrix, "run_id_a": a["run_id"],
                        "run_id_b": b["run_id"], "seed_a": a["seed"], "seed_b": b["seed"], "k_a": 4, "k_b": 4,
                        "dim": 256, "n_angles": 4, "mean_squared_cosine": cos2(layer, matrix),
                        "max_cosine": np.sqrt(cos2(layer, matrix)), "random_expectation": random,
                    })
    return pd.DataFrame(rows)


def metrics_table(runs: pd.DataFrame, entropy, accuracy, n_layers: int = 2, steps=STEPS) -> pd.DataFrame:
    """entropy(run, step, m, layer) and accuracy(run, step, m) at every evaluation step."""
    rows = []
    for run in _completed(runs):
        for step in steps:
            for m in evaluated_ms(run):
                rows.append({"run_id": run["run_id"], "step": step, "metric": "eval_accuracy", "m": m, "layer": None,
                             "value": float(accuracy(run, step, m))})
                rows.append({"run_id": run["run_id"], "step": step, "metric": "eval_loss", "m": m, "layer": None, "value": 1.0})
                for layer in range(n_layers):
                    rows.append({"run_id": run["run_id"], "step": step, "metric": "attention_entropy", "m": m,
                                 "layer": layer, "value": float(entropy(run, step, m, layer))})
    return pd.DataFrame(rows).astype({"m": "Int64", "layer": "Int64", "metric": "string"})


def commutators_table(runs: pd.DataFrame, outside, ratio, steps=STEPS, samples: int = 3) -> pd.DataFrame:
    """outside(run, step) = 1 - rho_exec^2 and ratio(run, step) = rho_exec / rho_random; step 0 has no basis (NaN)."""
    rows = []
    for run in _completed(runs):
        for step in steps:
            for sample in range(samples):
                out = float(outside(run, step)) if step > 0 else np.nan
                rho = np.sqrt(1 - out)
                rows.append({
                    "run_id": run["run_id"], "step": step, "sample": sample, "m_a": 2, "m_b": 2, "delta_norm": 1e-6,
                    "delta_norm_attention": 1e-6, "attention_share": 1.0, "step_norm_a": 1e-3, "step_norm_b": 1e-3,
                    "defect": 1.0 + 0.1 * sample + step / 1000, "cos_ab": 0.5, "basis_dim": 24 if step else 0,
                    "rho_exec": rho, "outside_energy": out, "rho_random": rho / float(ratio(run, step)) if step else np.nan,
                    "exec_random_ratio": float(ratio(run, step)) if step else np.nan,
                })
    return pd.DataFrame(rows)


def commutator_summary(runs: pd.DataFrame, commutators: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    quantities = ["defect", "rho_exec", "rho_random", "exec_random_ratio", "outside_energy"]
    rows = commutators.merge(runs[["run_id", *conditions]], on="run_id")
    phases = pd.concat([rows.assign(phase="all"), rows[rows["step"] <= 200].assign(phase="early"),
                        rows[rows["step"] >= 800].assign(phase="late")])
    per_run = phases.groupby(["run_id", *conditions, "phase"])[quantities].median().reset_index()
    grouped = per_run.groupby([*conditions, "phase"])
    summary = grouped[quantities].agg(["mean", "std"])
    summary.columns = [f"{q}_{'sd' if stat == 'std' else stat}" for q, stat in summary.columns]
    summary.insert(0, "n_runs", grouped["run_id"].nunique())
    return summary.reset_index()


def full_sweep(accuracy: float = 0.95) -> ReportData:
    """Every table, for a sweep over m (single curriculum) with commutators: every figure but 9 has data."""
    runs = runs_table([{"task.m": 1}, {"task.m": 2}], accuracy=accuracy)
    conditions = ["task.m"]
    er = effective_rank_table(runs, lambda run, layer, matrix: 4 if matrix in ("W_Q", "W_K") else 3)
    commutators = commutators_table(runs, lambda run, step: 0.97, lambda run, step: 6 - step / 250)
    return report_data(
        runs,
        effective_rank=er,
        effective_rank_summary=effective_rank_summary(runs, er, conditions),
        subspace_alignment=alignment_table(runs, conditions, lambda layer, matrix: 0.01),
        metrics=metrics_table(runs, lambda run, step, m, layer: 2.5 - step / 1000, lambda run, step, m: min(1, 0.2 + step / 800)),
        commutators=commutators,
        commutator_summary=commutator_summary(runs, commutators, conditions),
    )
