"""The two kinds of parts the aggregation stage is made of.

- A `Reducer` turns one completed run directory (and its `runs` row) into per-run tables, plus
  arrays that summaries may need later (principal directions, ...). Its output is cached per run,
  keyed on the files it reads, so a grown sweep only reduces its new or changed runs.
- A `Summary` builds one table from the combined per-run tables (and cached arrays).

To add a table, write a reducer or summary in its own module and list it in `registry.py`.
A reducer must read only run-directory files (never training internals) and return the same
output for the same files and options: cached and fresh results must be identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..config.schema import AggregateConfig

# Every reducer's cache key covers these too: they decide the run's state and its config.
ALWAYS_READ = ("status.json", ".hydra/config.yaml")


@dataclass
class RunOutput:
    tables: dict[str, pd.DataFrame]  # per-run tables, without run_id (the stage adds it)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # cached on disk, loaded by summaries on demand


@dataclass(frozen=True)
class Reducer:
    name: str
    version: int  # bump whenever the output for the same files changes: it invalidates cached results
    inputs: tuple[str, ...]  # run-directory files it reads, relative paths
    tables: dict[str, dict[str, str]]  # table name -> {column: dtype}, the columns of each table it adds
    reduce: Callable[[Path, dict, AggregateConfig], RunOutput]


# arrays(run_id, reducer_name) -> that reducer's arrays for that run
ArrayLoader = Callable[[str, str], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Summary:
    name: str
    version: int  # bump whenever the table built from the same per-run tables changes (manifest.py)
    build: Callable[[dict[str, pd.DataFrame], ArrayLoader, AggregateConfig], pd.DataFrame]


def typed_frame(records: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    """A DataFrame with exactly `columns` (name -> dtype), empty or not, so concatenations keep their types."""
    frame = pd.DataFrame.from_records(records, columns=list(columns))
    return frame.astype(columns)
