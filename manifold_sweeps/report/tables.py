"""The report's tables: what was run, the effective-rank and commutator summaries, and the runs' states.

Each function takes aggregation tables and returns a small DataFrame of display strings (rounded,
"mean ± sd", seeds counted), ready for the HTML and Markdown renderers.
"""

from __future__ import annotations

import re

import pandas as pd

from ..training.packing import UNREAD_KEYS
from .data import ReportData

# Every state of the runs table (aggregation), in the order the report lists them.
STATES = ("completed", "failed", "diverged", "interrupted", "running", "unreadable", "duplicate")
# Settings worth showing a reader, when the sweep holds them fixed.
SETUP_KEYS = ("task.op", "task.modulus", "task.seq_len", "task.m", "curriculum.kind", "curriculum.ms", "model.n_layers",
              "model.n_heads", "model.d_model", "model.mlp_ratio", "optimizer.name", "optimizer.lr",
              "train.steps", "train.batch_size", "train.snapshot_every", "commutator.every")
RANK_MEASURES = {"r90": 1, "r95": 1, "r99": 1, "participation_ratio": 2, "pc1_fraction": 2}  # measure -> decimals
COMMUTATOR_MEASURES = {"defect": 2, "rho_exec": 3, "rho_random": 3, "exec_random_ratio": 2, "outside_energy": 3}
MAX_REASON = 160  # characters of a failed run's reason shown in the report


def mean_sd(mean: float, sd: float, decimals: int) -> str:
    """'3.4 ± 0.5'; the mean alone when there is no sd (one seed); '' when there is no mean."""
    if mean is None or pd.isna(mean):
        return ""
    if sd is None or pd.isna(sd):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def state_counts(runs: pd.DataFrame) -> pd.DataFrame:
    counts = runs["state"].value_counts()
    rows = [{"state": s, "runs": int(counts.get(s, 0))} for s in STATES]
    rows += [{"state": s, "runs": int(n)} for s, n in counts.items() if s not in STATES]
    rows.append({"state": "total", "runs": len(runs)})
    return pd.DataFrame(rows)


def problem_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs left out of the statistics, with their state and why."""
    left_out = runs[runs["state"] != "completed"]
    reasons = left_out["reason"].fillna("").astype(str).map(lambda r: r if len(r) <= MAX_REASON else r[: MAX_REASON - 3] + "...")
    return pd.DataFrame({"run": left_out["run_id"].values, "state": left_out["state"].values, "reason": reasons.values})


def _unread(runs: pd.DataFrame) -> set[str]:
    """SETUP_KEYS that no run reads (UNREAD_KEYS: task.m outside curriculum=single, ...)."""
    def unread_by(rule) -> pd.Series:  # per run: its value of rule.by leaves the rule's keys unread
        return runs[rule.by].map(lambda v: rule.unread(None if v is None or v is pd.NA or v != v else v))

    unread = set()
    for key in SETUP_KEYS:
        rules = [rule for rule in UNREAD_KEYS if rule.covers(key) and rule.by in runs.columns]
        if rules and len(runs) and pd.concat([unread_by(rule) for rule in rules], axis=1).any(axis=1).all():
            unread.add(key)
    return unread


def fixed_settings(data: ReportData) -> list[tuple[str, str]]:
    """(key, value) of the SETUP_KEYS the completed runs share (and read)."""
    runs = data.completed if not data.completed.empty else data.runs
    unread = _unread(runs)
    settings = []
    for key in SETUP_KEYS:
        if key in unread:
            continue
        if key in runs.columns and key not in data.conditions and runs[key].nunique(dropna=False) == 1:
            value = runs[key].iloc[0]
            settings.append((key, "null" if pd.isna(value) else str(value)))
    return settings


def _accuracy_columns(runs: pd.DataFrame) -> list[str]:
    columns = [c for c in runs.columns if re.fullmatch(r"final_accuracy_m\d+", c)]
    return sorted(columns, key=lambda c: int(c.rsplit("m", 1)[1]))


def conditions_table(data: ReportData) -> pd.DataFrame:
    """One row per condition: completed seeds, runs in other states, final accuracy per m (mean ± sd)."""
    runs = data.completed
    if runs.empty:
        return pd.DataFrame()
    accuracy = _accuracy_columns(runs)
    rows = []
    for condition, group in runs.groupby("condition", sort=False):
        row = {"condition": condition, "seeds": len(group)}
        for column in accuracy:
            values = group[column].astype("float64")
            if values.notna().any():
                row[f"final accuracy m={column.rsplit('m', 1)[1]}"] = mean_sd(values.mean(), values.std(), 2)
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def _wide_summary(summary: pd.DataFrame, keys: list[str], measures: dict[str, int], count: str) -> pd.DataFrame:
    """Long (measure, mean, sd) or wide (<q>_mean, <q>_sd) summaries -> one 'mean ± sd' column per measure."""
    rows = []
    if "measure" in summary.columns:
        for group_keys, group in summary.groupby(keys, sort=False, dropna=False):
            row = dict(zip(keys, group_keys if isinstance(group_keys, tuple) else (group_keys,)))
            by_measure = group.set_index("measure")
            for measure, decimals in measures.items():
                if measure in by_measure.index:
                    row[measure] = mean_sd(by_measure.at[measure, "mean"], by_measure.at[measure, "sd"], decimals)
            row["seeds"] = int(group[count].max())
            rows.append(row)
    else:
        for _, r in summary.iterrows():
            row = {k: r[k] for k in keys}
            for measure, decimals in measures.items():
                if f"{measure}_mean" in summary.columns:
                    row[measure] = mean_sd(r[f"{measure}_mean"], r.get(f"{measure}_sd"), decimals)
            row["seeds"] = int(r[count])
            rows.append(row)
    return pd.DataFrame(rows)


def _condition_keys(summary: pd.DataFrame, data: ReportData) -> list[str]:
    """The condition columns of a summary worth showing (the informative ones), in the summary's order."""
    return [c for c in summary.columns if c in data.label_columns]


def rank_summary(data: ReportData) -> pd.DataFrame:
    """effective_rank_summary over the whole trajectory: one row per condition x layer x matrix."""
    if not data.has("effective_rank_summary"):
        return pd.DataFrame()
    summary = data.tables["effective_rank_summary"]
    summary = summary[summary["window"] == "whole"]
    keys = [*_condition_keys(summary, data), "layer", "matrix"]
    return _wide_summary(summary, keys, RANK_MEASURES, count="count")


def commutator_summary(data: ReportData) -> pd.DataFrame:
    """commutator_summary: one row per condition x phase (early, late, all)."""
    if not data.has("commutator_summary"):
        return pd.DataFrame()
    summary = data.tables["commutator_summary"]
    order = {"early": 0, "late": 1, "all": 2}
    summary = summary.sort_values("phase", key=lambda p: p.map(order), kind="stable")
    keys = _condition_keys(summary, data)
    summary = summary.sort_values(keys, kind="stable") if keys else summary
    return _wide_summary(summary, [*keys, "phase"], COMMUTATOR_MEASURES, count="n_runs")
