"""The Hydra task function: one job trains one run into Hydra's output directory.

A stop signal (submitit's checkpoint signal on preemption or near the time limit; SIGTERM outside
submitit) makes training checkpoint and end `interrupted`; then the signal goes on to submitit,
which requeues the job, and the requeued job resumes (see `preemption.py`).
"""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .preemption import StopSignal
from .training.loop import train


def run(cfg: DictConfig) -> str:
    with StopSignal() as stop:
        state = train(cfg, HydraConfig.get().runtime.output_dir, should_stop=stop)
    if state == "interrupted":
        stop.hand_over()
    return state
