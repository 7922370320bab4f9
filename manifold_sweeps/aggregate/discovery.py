"""Finding run directories under the paths given to the aggregation, and naming them.

A run directory is one holding `.hydra/config.yaml` and/or `status.json`. A run's id is its path
relative to the aggregation root (the single PATH given, or the common parent of several), so the
same sweep aggregated the same way always gives the same ids; a PATH that is itself a run
directory is named by its folder name.
"""

from __future__ import annotations

import os
from pathlib import Path

MARKERS = (os.path.join(".hydra", "config.yaml"), "status.json")


class NoRunsError(ValueError):
    """A PATH that does not exist, or paths without any run directory below them."""


def is_run_dir(path: Path) -> bool:
    return any((path / marker).is_file() for marker in MARKERS)


def _walk(path: Path) -> list[Path]:
    found = []
    for folder, subdirs, _ in os.walk(path):
        here = Path(folder)
        if is_run_dir(here):
            found.append(here)
            subdirs.clear()  # a run directory holds no other runs
            continue
        # Hidden folders (.hydra, .submitit, caches) never hold runs; sorted for a stable order.
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    return found


def aggregation_root(paths: list[Path]) -> Path:
    resolved = [Path(p).resolve() for p in paths]
    return resolved[0] if len(resolved) == 1 else Path(os.path.commonpath(resolved))


def find_run_dirs(paths: list[str | os.PathLike]) -> tuple[Path, list[Path]]:
    """(root, run directories sorted by path), or NoRunsError naming what was wrong."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise NoRunsError(f"not a directory: {', '.join(missing)} (give run directories, sweep directories or folders of sweeps)")
    runs = sorted({run for p in paths for run in _walk(p.resolve())})
    if not runs:
        raise NoRunsError(
            f"no run directory under {', '.join(str(p) for p in paths)}: a run directory holds "
            ".hydra/config.yaml or status.json"
        )
    return aggregation_root(paths), runs


def run_id(root: Path, run_dir: Path) -> str:
    relative = run_dir.relative_to(root).as_posix()
    return run_dir.name if relative == "." else relative
