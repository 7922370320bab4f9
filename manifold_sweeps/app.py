"""The task functions: one job trains one run into Hydra's output directory (`run`); a pack of jobs
trains its runs together in one process (`run_pack`, called by the launchers with
`hydra.launcher.pack_size` > 1, see `launch/packs.py`).

A stop signal (submitit's checkpoint signal on preemption or near the time limit; SIGTERM outside
submitit) makes training checkpoint and end `interrupted`; then the signal goes on to submitit,
which requeues the job, and the requeued job resumes (see `preemption.py`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .config.validation import ConfigError
from .launch.callbacks import restore_hydra_files
from .preemption import StopSignal
from .rundir.checkpoint import load_checkpoint
from .rundir.lock import RunDirBusy, hold_run_dirs
from .training.loop import check_runs, train_pack
from .training.packing import unread_overrides

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> str:
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    for line in unread_overrides(cfg, hydra_cfg.overrides.task):
        log.warning(line)
    try:
        return run_pack([cfg], [run_dir])[0]
    except (ConfigError, RunDirBusy):
        # Refused before training: the directory's run, if it holds one, keeps its own .hydra files.
        restore_hydra_files(run_dir)
        raise


def run_pack(cfgs: list[DictConfig], run_dirs: list[str | os.PathLike]) -> list[str]:
    """Train the runs together, each into its own directory; returns their final states.

    Runs whose checkpoints are at different steps (a relaunch with another pack_size, or runs
    checkpointed in different packs) cannot step together: each group of runs that resume from the
    same step trains as its own pack, one after another. On a stop signal the current group
    checkpoints, the groups not started yet stay as they are, and the signal is handed over.
    """
    states = ["interrupted"] * len(cfgs)
    dirs = [Path(d) for d in run_dirs]
    for run_dir in dirs:
        run_dir.mkdir(parents=True, exist_ok=True)
    with hold_run_dirs(dirs):
        check_runs(cfgs, dirs)  # every group's runs, before the first group trains
    with StopSignal() as stop:
        for members in resume_groups(run_dirs):
            done = train_pack([cfgs[i] for i in members], [run_dirs[i] for i in members], should_stop=stop)
            for i, state in zip(members, done):
                states[i] = state
            if stop():
                break
    # A signal after training's last poll (during the final evaluation and checkpoint, or while
    # finished runs are skipped) ends the job too: the next job must not start under a kill that follows.
    stop.hand_over()
    return states


def resume_groups(run_dirs: list[str | os.PathLike]) -> list[list[int]]:
    """Indices of the runs grouped by the step their checkpoint holds (no checkpoint: a group of its
    own), groups in the order of their first run."""
    groups: dict[int | None, list[int]] = {}
    for i, run_dir in enumerate(run_dirs):
        saved = load_checkpoint(Path(run_dir))
        groups.setdefault(None if saved is None else int(saved["step"]), []).append(i)
    return list(groups.values())
