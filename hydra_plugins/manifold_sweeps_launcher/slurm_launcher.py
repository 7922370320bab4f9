"""The SLURM launcher behind `hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml):
hydra-submitit-launcher's, plus four things.

- A sweep with more array tasks than the cluster's MaxArraySize goes out as several job arrays, one
  after another (each blocks until its jobs end, as batches of `hydra.sweeper.max_batch_size` do).
- Packed seeds: with `pack_size` N > 1, one array task per pack of up to N jobs (`_submitit_packing.py`).
- Settings that would misbehave on the cluster are refused before anything is submitted.
- The log says where run directories and job logs go, and the sweep's progress while it waits.

`hydra.launcher.*` fields are submitit_slurm's (see `SlurmQueueConf`) plus `max_array_size`,
`pack_size` and `progress_every_s`; their schema is stored as `hydra/launcher/slurm_schema` when Hydra scans its plugins.
"""

# No `from __future__ import annotations`: Hydra imports plugin modules without registering them in
# sys.modules, and the dataclass below could not resolve string annotations.
import logging
import re
import subprocess
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher

from hydra_plugins.manifold_sweeps_launcher._submitit_packing import SubmititPacking
from manifold_sweeps.config.validation import ConfigError
from manifold_sweeps.launch.packs import check_pack_size, refusal_ends_the_command
from manifold_sweeps.launch.settings import check_count, check_seconds

log = logging.getLogger(__name__)

SLURM_DEFAULT_MAX_ARRAY_SIZE = 1001


@dataclass
class SlurmLauncherConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.manifold_sweeps_launcher.slurm_launcher.SlurmLauncher"
    # Most tasks in one job array; null = the cluster's MaxArraySize (scontrol show config).
    max_array_size: Optional[int] = None
    # Most jobs trained together in one array task (jobs that differ only in per-run keys); 1 = one per task.
    pack_size: int = 1
    # Seconds between the whole sweep's progress lines in the launching process.
    progress_every_s: float = 60.0


ConfigStore.instance().store(group="hydra/launcher", name="slurm_schema", node=SlurmLauncherConf,
                             provider="manifold_sweeps")


def cluster_max_array_size() -> int:
    """MaxArraySize from `scontrol show config`: array task ids run from 0 to MaxArraySize - 1."""
    try:
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                                timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("could not ask the cluster for MaxArraySize (%s); assuming SLURM's default, %d",
                    err, SLURM_DEFAULT_MAX_ARRAY_SIZE)
        return SLURM_DEFAULT_MAX_ARRAY_SIZE
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    return int(match.group(1)) if match else SLURM_DEFAULT_MAX_ARRAY_SIZE


def check_launcher_params(params: Dict[str, Any]) -> None:
    """Refuse settings that SLURM would accept but that break runs, naming the key."""

    def refuse(key: str, allowed: str, why: str) -> None:
        raise ConfigError(f"hydra.launcher.{key}={params[key]} is not allowed ({why}); allowed: {allowed}")

    check_count("timeout_min", params["timeout_min"], "the time limit of every job", unit="a whole number of minutes")
    timeout_s = 60 * params["timeout_min"]
    # submitit counts the signal as the time limit (requeues bounded by max_num_timeout) only when it
    # comes after min(0.8 x limit, limit - 10 min) of the attempt; an earlier one reads as a
    # preemption, requeued without limit, each attempt training for just limit - signal_delay_s.
    latest = min(timeout_s - 1, max(int(0.2 * timeout_s), 600))
    if not 0 <= params["signal_delay_s"] <= latest:
        refuse("signal_delay_s", f"0 <= seconds <= {latest} (max(20% of the time limit, 10 min), below the limit)",
               "submitit would take the checkpoint signal for a preemption and requeue the job without end, "
               "each attempt training only for the time limit less this delay")
    check_count("max_num_timeout", params["max_num_timeout"], "how often a job that reached its time limit is "
                "requeued", minimum=0)
    check_count("array_parallelism", params["array_parallelism"], "how many tasks of an array may run at once")
    check_count("max_array_size", params.get("max_array_size"), "tasks per job array", null="ask the cluster")
    check_count("cpus_per_task", params.get("cpus_per_task"), "the CPUs SLURM reserves for each task, and its "
                "threads", null="SLURM's default CPUs, PyTorch's default threads")


class SlurmLauncher(SubmititPacking, SubmititSlurmLauncher):
    after_ctrl_c = ("the jobs already submitted go on running on the cluster (`squeue --me` lists them, "
                    "`scancel <job id>` stops them); their runs report their progress in their status.json")

    def __init__(self, max_array_size: Optional[int] = None, pack_size: int = 1, progress_every_s: float = 60.0,
                 **params: Any) -> None:
        with refusal_ends_the_command():  # Hydra would wrap the message in its instantiation error
            check_launcher_params({**params, "max_array_size": max_array_size})
            check_pack_size(pack_size)
            check_seconds("progress_every_s", progress_every_s, "between the sweep's progress lines")
        super().__init__(**params)
        self.max_array_size = max_array_size
        self.pack_size = pack_size
        self.progress_every_s = progress_every_s

    def submit(self, entries: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        """One array task per entry (a job, or a pack), in arrays of at most max_array_size tasks."""
        size = max(1, self.max_array_size or cluster_max_array_size())  # MaxArraySize=0 turns arrays off
        n = len(entries)
        arrays = (n + size - 1) // size
        sweep_dir = self.config.hydra.sweep.dir
        log.info("%d %s -> %d SLURM job array(s) of at most %d tasks; run directories in %s, "
                 "job logs in %s", n, "job(s)" if self.packs is None else "pack(s)", arrays, size, sweep_dir,
                 str(self.params["submitit_folder"]).replace("%j", "<job id>"))
        returns: List[Any] = []
        for start in range(0, n, size):
            returns.extend(super().submit(entries[start:start + size], initial_job_idx + start))
        return returns
