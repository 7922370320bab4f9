"""The `commutators` and `commutator_summary` tables (definitions: manifold_sweeps/commutator/tables.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..commutator import tables as commutator_tables
from ..config.schema import AggregateConfig
from ..rundir import commutators as files
from ..rundir.trajectory import META_FILE, STEPS_FILE, TRAJECTORY_FILE
from .reducers import Reducer, RunOutput, Summary
from .runs import condition_columns

NAME = "commutators"
COLUMNS = {
    **files.COLUMNS,
    "basis_dim_final": "Int64",
    **{name: "float64" for name in commutator_tables.FINAL if name != "basis_dim_final"},
}


def reduce_run(run_dir: Path, row: dict, cfg: AggregateConfig) -> RunOutput:
    rows = commutator_tables.commutator_rows(run_dir).drop(columns="run_id")  # the stage adds its own run_id
    return RunOutput({NAME: rows[list(COLUMNS)].astype(COLUMNS)})


def build_summary(tables: dict[str, pd.DataFrame], arrays, cfg: AggregateConfig) -> pd.DataFrame:
    runs = tables["runs"]
    runs = runs[runs["state"] == "completed"]
    return commutator_tables.commutator_summary(tables[NAME], runs, condition_columns(runs))


REDUCER = Reducer(
    name=NAME,
    version=1,
    inputs=(files.COMMUTATORS_FILE, files.META_FILE, files.DELTAS_FILE, files.INDEX_FILE,
            TRAJECTORY_FILE, STEPS_FILE, META_FILE),
    tables={NAME: COLUMNS},
    reduce=reduce_run,
)
SUMMARY = Summary(name="commutator_summary", version=1, build=build_summary)
