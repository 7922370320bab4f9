"""Hydra callbacks (conf/config.yaml, `hydra.callbacks`).

A single run's values are checked in `on_run_start`, before Hydra creates the run directory: a
typo then leaves no directory behind that the aggregation would count as a failed run. Sweeps are
checked by their launchers, before any job directory exists (launch/packs.py).

A single run into an existing directory (`hydra.run.dir=...`) has its `.hydra/*.yaml` rewritten by
Hydra before the task function can refuse it (a directory holding another config's run, or one that
another process is training). The files as they were are kept here, at `on_run_start`, for the task
function to put back (`restore_hydra_files`): analysis reads a run's config and group choices from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..rundir.atomic import write_bytes
from .packs import refusal_ends_the_command, task_config


class ValidateBeforeRun(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from ..config.validation import validate  # lazily: torch comes with the device check
        from ..training.device import resolve_device

        with refusal_ends_the_command():
            cfg = task_config(config)
            validate(cfg)
            resolve_device(cfg.train.device)
        hydra_dir = Path(config.hydra.run.dir).resolve() / ".hydra"
        _hydra_files_before[hydra_dir] = {path.name: path.read_bytes() for path in hydra_dir.glob("*.yaml")}


# .hydra folder -> {file name: bytes} before this process's single run rewrote them
_hydra_files_before: dict[Path, dict[str, bytes]] = {}


def restore_hydra_files(run_dir: str | Path) -> None:
    """Put back the run directory's `.hydra/*.yaml` as they were before this single run was launched
    (nothing for a directory this process never saw, or one that held no such files)."""
    hydra_dir = Path(run_dir).resolve() / ".hydra"
    for name, data in _hydra_files_before.get(hydra_dir, {}).items():
        write_bytes(hydra_dir / name, data)
