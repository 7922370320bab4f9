"""The `sae_probes` and `sae_probe_summary` tables (definitions: manifold_sweeps/probes/tables.py).

Every aggregation reads the probe results a run already has (written by `python -m
manifold_sweeps.probes`); with `--probes` it first probes each run whose results are missing or
stale (the probe stage's own check), which trains SAEs. The two are separate reducers so that their
cached results never stand in for each other. Each row carries the probe-stage settings of its run's
probe.json (`probe_settings`), so that the summary never averages runs probed with other settings.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..config.schema import AggregateConfig
from ..probes.stage import sae_probe_rows
from ..probes.tables import (LATENTS_FILE, META_FILE, PROBE_COLUMNS, PROBES_DIR, PROBES_FILE, load_sae_probes,
                             sae_probe_summary)
from .reducers import Reducer, RunOutput, Summary
from .runs import condition_columns

NAME = "sae_probes"
COLUMNS = {k: v for k, v in PROBE_COLUMNS.items() if k != "run_id"}


def _output(rows: pd.DataFrame) -> RunOutput:
    rows = rows.drop(columns="run_id")  # the stage adds its own run_id
    return RunOutput({NAME: rows[list(COLUMNS)].astype(COLUMNS)})


def read_run(run_dir: Path, row: dict, cfg: AggregateConfig) -> RunOutput:
    return _output(load_sae_probes(run_dir))


def probe_run(run_dir: Path, row: dict, cfg: AggregateConfig) -> RunOutput:
    return _output(sae_probe_rows(run_dir))


def build_summary(tables: dict[str, pd.DataFrame], arrays, cfg: AggregateConfig) -> pd.DataFrame:
    runs = tables["runs"]
    runs = runs[runs["state"] == "completed"]
    return sae_probe_summary(tables[NAME], runs, condition_columns(runs))


INPUTS = (os.path.join(PROBES_DIR, PROBES_FILE), os.path.join(PROBES_DIR, LATENTS_FILE),
          os.path.join(PROBES_DIR, META_FILE))
# Version 2 added probe_settings: cached rows without it are read again.
READ = Reducer(name=NAME, version=2, inputs=INPUTS, tables={NAME: COLUMNS}, reduce=read_run)
PROBE = Reducer(name=f"{NAME}_probed", version=2, inputs=INPUTS, tables={NAME: COLUMNS}, reduce=probe_run)
SUMMARY = Summary(name="sae_probe_summary", version=1, build=build_summary)
