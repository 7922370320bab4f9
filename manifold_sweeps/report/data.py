"""What the report is built from: the aggregation's tables, and the conditions that split the runs.

Figures and claims never read run directories or import training code: they get the tables written
by `python -m manifold_sweeps.aggregate` (by name: runs, effective_rank, subspace_alignment, metrics,
commutators, ...). A condition is one combination of the config values that vary across the
completed runs except the seed (the aggregation's `condition_columns`); the seeds of a condition are
its repeats, and every mean and sd in the report is over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ALL_RUNS = "all runs"  # the label of the one condition of a sweep where nothing but the seed varies
# The config keys that make a model an MLP model, and a task multiplication (modmul also sets C = 7).
MLP_KEYS = ("model", "model.mlp_ratio")
OP_KEYS = ("task", "task.op", "task.modulus")
# Run columns every figure and claim may need beside the conditions.
RUN_COLUMNS = ["run_id", "seed", "model.mlp_ratio", "task.op", "task.modulus", "curriculum.kind", "curriculum.ms"]


def informative_columns(runs: pd.DataFrame, conditions: list[str]) -> list[str]:
    """The conditions worth naming in a label: each one splits the runs further than the ones before it.

    Group choices come first, so `model=standard` names a condition and `model.mlp_ratio=4`, which
    follows from it, is left out of the label (it still defines the condition).
    """
    ordered = sorted(conditions, key=lambda c: ("." in c, conditions.index(c)))
    kept: list[str] = []
    n_groups = 1
    for column in ordered:
        n = len(runs[kept + [column]].drop_duplicates())
        if n > n_groups:
            kept.append(column)
            n_groups = n
    return kept


def condition_labels(runs: pd.DataFrame, columns: list[str]) -> pd.Series:
    """'task.m=2, model=standard' per run (ALL_RUNS when no column is given)."""
    if not columns:
        return pd.Series(ALL_RUNS, index=runs.index, dtype="string")
    parts = [column + "=" + runs[column].astype("string").fillna("null") for column in columns]
    return parts[0].str.cat(parts[1:], sep=", ").astype("string")


def other_conditions(conditions: list[str], variant_keys: tuple[str, ...]) -> list[str]:
    """The conditions to hold fixed when comparing variants that `variant_keys` define."""
    return [c for c in conditions if c not in variant_keys]


def mlp_variant(runs: pd.DataFrame) -> pd.Series:
    return pd.Series(np.where(runs["model.mlp_ratio"] > 0, "attention + MLP", "attention only"), index=runs.index)


def op_variant(runs: pd.DataFrame) -> pd.Series:
    return runs["task.op"].astype("string")


@dataclass
class ReportData:
    runs: pd.DataFrame  # the `runs` table: every run found, in any state
    conditions: list[str]  # columns of `runs` that define a condition (vary across completed runs, seed aside)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # every other table, by name
    aggregation: dict = field(default_factory=dict)  # the tables' manifest (aggregate/manifest.py), {} if none

    def __post_init__(self) -> None:
        completed = self.runs[self.runs["state"] == "completed"].copy()
        self.label_columns = informative_columns(completed, self.conditions)
        completed["condition"] = condition_labels(completed, self.label_columns)
        self.completed = completed.reset_index(drop=True)

    def has(self, name: str) -> bool:
        """Whether the sweep has the table, with rows."""
        table = self.tables.get(name)
        return table is not None and not table.empty

    def per_run(self, name: str, runs: pd.DataFrame | None = None) -> pd.DataFrame:
        """Table `name` joined with its runs (see `join_runs`); empty when the table is absent."""
        table = self.tables.get(name)
        return self.join_runs(table if table is not None else pd.DataFrame(columns=["run_id"]), runs)

    def join_runs(self, table: pd.DataFrame, runs: pd.DataFrame | None = None, on: str = "run_id") -> pd.DataFrame:
        """`table` joined on `on` with its runs' seed, condition label, condition columns and RUN_COLUMNS.

        Only rows of completed runs are kept (of `runs`, a subset of `completed`, when given).
        """
        runs = self.completed if runs is None else runs
        columns = list(dict.fromkeys([c for c in RUN_COLUMNS if c in runs.columns] + ["condition", *self.conditions]))
        table = table.drop(columns=[c for c in columns if c in table.columns and c != on])
        return table.merge(runs[columns].rename(columns={"run_id": on}), on=on, how="inner")

    def main_setting(self) -> pd.DataFrame:
        """The completed runs of the paper's main setting: attention-only models on modular addition."""
        runs = self.completed
        return runs[(runs["model.mlp_ratio"] == 0) & (runs["task.op"] == "add")]

    def relabel(self, frame: pd.DataFrame, drop: tuple[str, ...]) -> pd.DataFrame:
        """`frame` (with run_id) with its condition label recomputed without the columns in `drop`."""
        labels = condition_labels(self.completed, [c for c in self.label_columns if c not in drop])
        return frame.drop(columns="condition").merge(
            pd.DataFrame({"run_id": self.completed["run_id"], "condition": labels}), on="run_id")

    def variants(self, variant: pd.Series, keys: tuple[str, ...]) -> pd.DataFrame:
        """Completed runs with `variant` (e.g. mlp_variant) and `others`: the label of the conditions
        held fixed while comparing the variants (every condition but `keys`)."""
        runs = self.completed.assign(variant=variant.values)
        runs["others"] = condition_labels(runs, informative_columns(runs, other_conditions(self.conditions, keys)))
        return runs
