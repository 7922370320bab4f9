"""Choosing the training device from train.device."""

from __future__ import annotations

import torch

from ..config.validation import ConfigError
from ..task.layout import _name


def resolve_device(setting, key: str = "train.device") -> torch.device:
    """The device a `key` setting (auto, cpu, cuda) names here."""
    name = _name(setting)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}=cuda is not available: no CUDA device is visible; allowed here: auto, cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"{key}={name} is not allowed; allowed: auto, cpu, cuda")
    return torch.device(name)
