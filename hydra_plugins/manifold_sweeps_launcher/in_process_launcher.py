"""The launcher behind `hydra/launcher=in_process` (conf/hydra/launcher/in_process.yaml), our default:
Hydra's basic launcher (jobs one after another in this process), plus packed seeds.

Every job is composed and validated first, so a bad value in the last job stops the sweep before the
first one trains. Then `hydra.launcher.pack_size=1` (the default) runs the jobs as Hydra's basic
launcher does, one `run_job` after another, but with the configs composed for the validation
(Hydra's launcher would compose each job a second time: 0.1 to 0.3 s per job); with N > 1 the jobs
that differ only in per-run keys train together, up to N per pack, one pack after another
(manifold_sweeps/launch/packs.py).
"""

# No `from __future__ import annotations`: Hydra imports plugin modules without registering them in
# sys.modules, and the dataclass below could not resolve string annotations.
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher as HydraBasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals

from manifold_sweeps.launch.packs import (
    check_pack_size, compose_sweep, in_sweep_order, plan_packs, refusal_ends_the_command, run_pack_jobs, sweep_jobs,
    validate_sweep,
)

log = logging.getLogger(__name__)


@dataclass
class InProcessLauncherConf:
    _target_: str = "hydra_plugins.manifold_sweeps_launcher.in_process_launcher.InProcessLauncher"
    # Most jobs trained together in one process (jobs that differ only in per-run keys); 1 = one at a time.
    pack_size: int = 1


ConfigStore.instance().store(group="hydra/launcher", name="in_process_schema", node=InProcessLauncherConf,
                             provider="manifold_sweeps")


class InProcessLauncher(HydraBasicLauncher):
    def __init__(self, pack_size: int = 1) -> None:
        with refusal_ends_the_command():  # Hydra would wrap the message in its instantiation error
            check_pack_size(pack_size)
        super().__init__()
        self.pack_size = pack_size

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        if self.pack_size == 1:
            return self._launch_one_by_one(job_overrides, initial_job_idx)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        jobs = sweep_jobs(job_overrides, initial_job_idx)
        configs = compose_sweep(self.hydra_context, self.config, jobs)
        with refusal_ends_the_command():
            packs = plan_packs(jobs, configs, self.pack_size)
        log.info(f"Launching {len(jobs)} jobs locally, {len(packs)} pack(s) one after another")
        returns: List[List[JobReturn]] = []
        for pack in packs:
            returns.append(run_pack_jobs(self.hydra_context, [configs[i] for i in pack], "hydra.sweep.dir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return in_sweep_order(packs, returns)

    def _launch_one_by_one(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
        """Hydra's BasicLauncher.launch (hydra-core 1.3), given the configs validate_sweep composed."""
        with refusal_ends_the_command():
            jobs, configs = validate_sweep(self.hydra_context, self.config, job_overrides, initial_job_idx)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(jobs)} jobs locally")
        returns = []
        for job, config in zip(jobs, configs):
            log.info(f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}")
            returns.append(run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=config,
                                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns
