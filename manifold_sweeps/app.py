"""The Hydra task function: one job trains one run into Hydra's output directory."""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .training.loop import train


def run(cfg: DictConfig) -> str:
    return train(cfg, HydraConfig.get().runtime.output_dir)
