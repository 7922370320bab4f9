"""The launcher behind `hydra/launcher=local` (conf/hydra/launcher/local.yaml): hydra-submitit's local
launcher (one process per job on this machine, all at once), plus packed seeds: with
`hydra.launcher.pack_size=N` one process per pack of up to N jobs (`_submitit_packing.py`), and a
thread count per process that shares this machine's cores among them (`cpus_per_task`).
"""

# No `from __future__ import annotations`: see slurm_launcher.py.
from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher as SubmititLocalLauncher

from hydra_plugins.manifold_sweeps_launcher._submitit_packing import SubmititPacking
from manifold_sweeps.config.validation import ConfigError
from manifold_sweeps.launch.cpu_threads import check_cpus_per_task, shared_cores
from manifold_sweeps.launch.packs import check_pack_size, refusal_ends_the_command


@dataclass
class LocalLauncherConf(LocalQueueConf):
    _target_: str = "hydra_plugins.manifold_sweeps_launcher.local_launcher.LocalLauncher"
    # Most jobs trained together in one process (jobs that differ only in per-run keys); 1 = one per process.
    pack_size: int = 1


ConfigStore.instance().store(group="hydra/launcher", name="local_schema", node=LocalLauncherConf,
                             provider="manifold_sweeps")


class LocalLauncher(SubmititPacking, SubmititLocalLauncher):
    def __init__(self, pack_size: int = 1, **params: Any) -> None:
        with refusal_ends_the_command():  # Hydra would wrap the message in its instantiation error
            check_pack_size(pack_size)
            check_cpus_per_task(params.get("cpus_per_task"))
            if not params.get("timeout_min", 1) >= 1:  # submitit would kill every job at once, before any output
                raise ConfigError(f"hydra.launcher.timeout_min={params['timeout_min']} is not allowed (the time "
                                  "limit of every job); allowed: a whole number of minutes >= 1")
        super().__init__(**params)
        self.pack_size = pack_size

    def task_threads(self, n_tasks: int) -> Optional[int]:
        """cpus_per_task, or else this machine's cores shared among the n_tasks processes, all started at once."""
        return self.params.get("cpus_per_task") or shared_cores(n_tasks)
