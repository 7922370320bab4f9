"""Choosing the training device from train.device."""

from __future__ import annotations

import functools
import platform

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


@functools.cache
def device_model(device: torch.device) -> str:
    """The processor behind a device, as far as it decides the kernels and so the last bits of
    results: the GPU's name and compute capability, or the CPU's model and the vector instructions
    PyTorch uses on it."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})"
    return f"{_cpu_model()} ({torch.backends.cpu.get_cpu_capability()})"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
