"""`checkpoint.pt`: everything needed to resume a run exactly (written atomically).

Contents: format, step (updates done), model and optimizer state of this run alone, the states of
its random generators, the trajectory row count, the train-loss accumulator, wall time so far, the
config and the launch's `.hydra/hydra.yaml` and `overrides.yaml` (written back when a job of another
config is refused in this directory). Checkpoints of packed runs hold only their own run's slice, so
a run resumes the same way alone or in a pack.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .atomic import write_torch

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = 1


def save_checkpoint(run_dir: str | os.PathLike, payload: dict) -> None:
    write_torch(Path(run_dir) / CHECKPOINT_FILE, {"format": FORMAT, **payload})


def load_checkpoint(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} has checkpoint format {payload.get('format')}, expected {FORMAT}")
    return payload
