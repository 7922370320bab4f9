"""The launcher behind `hydra/launcher=local` (conf/hydra/launcher/local.yaml): hydra-submitit's local
launcher (one process per job on this machine), plus four things.

- Packed seeds: with `hydra.launcher.pack_size=N` one process per pack of up to N jobs (`_submitit_packing.py`).
- At most `max_parallel` processes at once (default: one per core), in waves: submitit's local
  executor starts every job it is given at once, and a 120-job sweep of 400 MB processes would
  exhaust a laptop's memory.
- While it waits, the sweep's progress every `progress_every_s` seconds (`_submitit_packing.py`).
- Each process trains with `cpus_per_task` threads, by default this machine's cores shared among the
  processes of its wave (manifold_sweeps/launch/cpu_threads.py).
"""

# No `from __future__ import annotations`: see slurm_launcher.py.
import logging
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher as SubmititLocalLauncher

from hydra_plugins.manifold_sweeps_launcher._submitit_packing import SubmititPacking
from manifold_sweeps.launch import cpu_threads
from manifold_sweeps.launch.packs import check_pack_size, refusal_ends_the_command
from manifold_sweeps.launch.settings import check_count, check_seconds

log = logging.getLogger(__name__)


@dataclass
class LocalLauncherConf(LocalQueueConf):
    _target_: str = "hydra_plugins.manifold_sweeps_launcher.local_launcher.LocalLauncher"
    # Most jobs trained together in one process (jobs that differ only in per-run keys); 1 = one per process.
    pack_size: int = 1
    # Most processes running at once (more go in waves, each after the previous one has ended); null = one per core.
    max_parallel: Optional[int] = None
    # Seconds between the whole sweep's progress lines in the launching process.
    progress_every_s: float = 60.0


ConfigStore.instance().store(group="hydra/launcher", name="local_schema", node=LocalLauncherConf,
                             provider="manifold_sweeps")


class LocalLauncher(SubmititPacking, SubmititLocalLauncher):
    # The terminal's Ctrl-C reaches the jobs too: each checkpoints its runs (preemption.default_stop_signals).
    after_ctrl_c = ("this sweep's processes stop too, each run checkpointed and `interrupted`; the same command "
                    "again resumes them and skips finished runs")

    def __init__(self, pack_size: int = 1, max_parallel: Optional[int] = None, progress_every_s: float = 60.0,
                 **params: Any) -> None:
        with refusal_ends_the_command():  # Hydra would wrap the message in its instantiation error
            check_pack_size(pack_size)
            check_count("cpus_per_task", params.get("cpus_per_task"), "the CPU threads of each job",
                        null="this machine's cores shared among the processes running together")
            check_count("max_parallel", max_parallel, "the most processes running at once", null="one per core")
            check_seconds("progress_every_s", progress_every_s, "between the sweep's progress lines")
            # submitit would kill every job at once, before any output
            check_count("timeout_min", params.get("timeout_min"), "the time limit of every job",
                        unit="a whole number of minutes")
        super().__init__(**params)
        self.pack_size = pack_size
        self.max_parallel = max_parallel
        self.progress_every_s = progress_every_s

    def submit(self, entries: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        """One process per entry (a job, or a pack), in waves of at most max_parallel."""
        size = self.max_parallel or cpu_threads.usable_cores()
        n = len(entries)
        waves = (n + size - 1) // size
        if waves > 1:
            log.info("%d processes in %d waves of at most %d (hydra.launcher.max_parallel), each wave after the "
                     "previous one has ended", n, waves, size)
        returns: List[Any] = []
        failure: Optional[Exception] = None
        for start in range(0, n, size):
            if waves > 1:
                log.info("wave %d of %d: %d process(es)", start // size + 1, waves, min(size, n - start))
            try:
                returns.extend(super().submit(entries[start:start + size], initial_job_idx + start))
            except Exception as err:  # a process that died without a result (killed, out of memory, ...)
                # The later waves still run, as they would have had every process started at once; the
                # error ends the sweep after them. The dead process's wave-mates may still be running.
                log.error("a process of the wave from job %d ended without a result (%s); the remaining waves "
                          "still run", initial_job_idx + start, err)
                failure = failure or err
        if failure is not None:
            raise failure
        return returns

    def task_threads(self, n_tasks: int) -> Optional[int]:
        """cpus_per_task, or else this machine's cores shared among the n_tasks processes running together."""
        return super().task_threads(n_tasks) or cpu_threads.shared_cores(n_tasks)
