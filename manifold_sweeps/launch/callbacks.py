"""Hydra callbacks (conf/config.yaml, `hydra.callbacks`).

A single run's values are checked in `on_run_start`, before Hydra creates the run directory: a
typo then leaves no directory behind that the aggregation would count as a failed run. Sweeps are
checked by their launchers, before any job directory exists (launch/packs.py).
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .packs import refusal_ends_the_command, task_config


class ValidateBeforeRun(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from ..config.validation import validate  # lazily: torch comes with the device check
        from ..training.device import resolve_device

        with refusal_ends_the_command():
            cfg = task_config(config)
            validate(cfg)
            resolve_device(cfg.train.device)
