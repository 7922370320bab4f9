"""Whether the tables of a sweep must be (re)built before reporting on it.

The tables are stale when `runs.parquet` is missing, or when any file or folder under the sweep
(outside the tables and report folders and hidden folders such as .submitit) changed after it was
written: a new run, a run that finished or failed since, a deleted run (its parent folder changes).
Re-aggregating is cheap when little changed: the aggregation caches its per-run results.
"""

from __future__ import annotations

import os
from pathlib import Path

RUNS_TABLE = "runs.parquet"


def newest_change(roots: list[Path], skip: list[Path]) -> float:
    """The latest modification time (s) of any file or folder under `roots`, outside `skip` and hidden folders."""
    skip_resolved = {p.resolve() for p in skip}
    newest = 0.0
    for root in roots:
        newest = max(newest, os.stat(root).st_mtime)  # a run deleted right under the root changes only the root
        for folder, subdirs, files in os.walk(root):
            here = Path(folder)
            subdirs[:] = [d for d in subdirs if not d.startswith(".") and (here / d).resolve() not in skip_resolved]
            for name in [*files, *subdirs]:
                try:
                    newest = max(newest, os.stat(here / name).st_mtime)
                except OSError:  # a file that vanished while walking (a run writing atomically)
                    continue
    return newest


def tables_are_stale(roots: list[str | os.PathLike], tables_dir: str | os.PathLike, report_dir: str | os.PathLike) -> bool:
    tables_dir = Path(tables_dir)
    try:
        written = os.stat(tables_dir / RUNS_TABLE).st_mtime
    except OSError:
        return True
    return newest_change([Path(r) for r in roots], [tables_dir, Path(report_dir)]) > written
