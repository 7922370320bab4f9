"""Writing and loading aggregation tables: `<tables>/<name>.parquet` (and `<name>.csv` for summaries).

Every file is written atomically (temporary name, then rename): an interrupted aggregation leaves
the previous version of a table or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..rundir.atomic import atomic_path


def write_table(tables_dir: str | os.PathLike, name: str, frame: pd.DataFrame, csv: bool = False) -> None:
    tables_dir = Path(tables_dir)
    with atomic_path(tables_dir / f"{name}.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    if csv:
        with atomic_path(tables_dir / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)


def load_table(tables_dir: str | os.PathLike, name: str) -> pd.DataFrame:
    """One table written by `python -m manifold_sweeps.aggregate` (runs, effective_rank, ...)."""
    path = Path(tables_dir) / f"{name}.parquet"
    if not path.exists():
        present = sorted(p.stem for p in Path(tables_dir).glob("*.parquet"))
        raise FileNotFoundError(
            f"no table {name!r} in {tables_dir} (tables there: {', '.join(present) or 'none'}); "
            "run python -m manifold_sweeps.aggregate first"
        )
    return pd.read_parquet(path)
