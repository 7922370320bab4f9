"""Real training runs for the benchmarks: preset configs composed from `conf/`, timed step by step.

Runs train through `train_pack`, the same loop as any job (snapshots, checkpoints and run-directory
files included), into a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ..config.schema import register_configs
from ..paths import CONF_DIR
from ..training.device import resolve_device
from ..training.loop import train_pack
from .timing import StepClock


def compose_config(*overrides: str) -> DictConfig:
    """The job config a `python -m manifold_sweeps OVERRIDES` run would get (without the hydra node)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def bench_device(preset: str = "paper") -> torch.device:
    """The device a preset's runs train on here (train.device, `auto` unless the preset pins it)."""
    return resolve_device(compose_config(f"experiment={preset}").train.device)


def pack_configs(preset: str, seeds, steps: int, *overrides: str) -> list[DictConfig]:
    """Configs of a preset, one per seed, trained for `steps` steps."""
    base = compose_config(f"experiment={preset}", f"train.steps={steps}", *overrides)
    cfgs = []
    for seed in seeds:
        cfg = copy.deepcopy(base)
        cfg.seed = int(seed)
        cfgs.append(cfg)
    return cfgs


def train_timed(cfgs: list[DictConfig]) -> StepClock:
    """Train the runs packed together; returns the clock of the loop's steps.

    The clock's window from the poll at step k to the poll after the last update holds every update
    and the snapshots in between, and leaves out setup, the evaluation at step 0 and the final
    snapshot, evaluation and checkpoint.
    """
    clock = StepClock(resolve_device(cfgs[0].train.device))
    with tempfile.TemporaryDirectory(prefix="manifold-bench-") as tmp:
        states = train_pack(cfgs, [Path(tmp) / f"run{i}" for i in range(len(cfgs))], should_stop=clock)
    if set(states) != {"completed"}:
        raise RuntimeError(f"benchmark runs ended {states}, expected completed")
    return clock
