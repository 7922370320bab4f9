"""`checkpoints/step_XXXXXX.pt`: model-only weights at chosen steps, for the probe stage.

Unlike `checkpoint.pt` (the latest full training state, overwritten), these are kept: one file per
step of `probe.checkpoint_steps` (or `probe.checkpoint_fractions` of train.steps), written
atomically. Each describes itself, so it loads without the run's other files:

    format  1
    step    updates done when the weights were taken
    shape   the model's shape (ModelShape fields: vocab_size, seq_len, n_classes, n_layers, ...)
    model   this run's weights alone (no run dimension): `Transformer(ModelShape(**shape))` with
            `load_run_state(0, model)` rebuilds it
    config  the run's resolved config (Enum values as names)
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .atomic import write_torch

CHECKPOINTS_DIR = "checkpoints"
FORMAT = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


def planned_checkpoint_steps(probe_cfg, total_steps: int) -> list[int]:
    """The steps whose weights a run keeps: probe.checkpoint_steps, else the fractions of training."""
    if probe_cfg.checkpoint_steps is not None:
        steps = [int(s) for s in probe_cfg.checkpoint_steps]
    else:
        # Round half up: Python's round() sends 0.5 to the even neighbour.
        steps = [math.floor(float(f) * total_steps + 0.5) for f in probe_cfg.checkpoint_fractions]
    return sorted(set(steps))


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / f"step_{step:06d}.pt"


def save_model_checkpoint(run_dir: str | os.PathLike, step: int, model_state: dict, shape, config) -> Path:
    """shape: a ModelShape (any dataclass); config: the run's DictConfig or a plain dict."""
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True, enum_to_str=True)
    path = checkpoint_path(run_dir, step)
    payload = {"format": FORMAT, "step": int(step), "shape": dataclasses.asdict(shape), "model": model_state,
               "config": config}
    write_torch(path, payload)
    return path


def saved_checkpoint_steps(run_dir: str | os.PathLike) -> list[int]:
    """Steps of the model checkpoints present in run_dir, ascending."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for m in map(_NAME.match, os.listdir(folder)) if m)


def load_model_checkpoint(run_dir: str | os.PathLike, step: int) -> dict:
    path = checkpoint_path(run_dir, step)
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} has model-checkpoint format {payload.get('format')}, expected {FORMAT}")
    return payload
