"""Packed seeds for hydra-submitit's launchers (our `local` and `slurm`): one submitit task per pack.

hydra-submitit's `launch` submits one task per entry of the list it is given, and each task calls
the (pickled) launcher with the entry's overrides and number. With pack_size > 1 the entries are one
label per pack (they are only logged), the packs travel in `self.packs`, and `__call__` trains the
pack whose index comes as the job number. submitit requeues a task with the same arguments, so a
preempted pack resumes as the same pack. With pack_size=1 the entries are the jobs' overrides, as
in hydra-submitit.

Every job runs the config composed and validated at submission, not one composed again from
`conf/` when it starts: hydra-submitit's own job recomposes, so edits to `conf/` made while jobs wait
in the queue would change them unseen, and would get a preempted run's requeued job refused as
another config. The configs are pickled one file per job, `<submitit folder>/composed/<launch>/<job>.pkl`
(a folder per launch: a relaunch into the same sweep, say one grown from seeds 0-19 to 20-39, must not
hand its configs to the first launch's jobs still in the queue), rather than in the launcher, which submitit pickles once per task (20 kB a config: 120 tasks of a
120-job sweep would each carry 2.4 MB). A job without its file (submitted by an older version)
composes as before.

While it waits for its jobs, the launching process logs the whole sweep's progress every
`hydra.launcher.progress_every_s` seconds, read from the runs' status files (launch/sweep_progress.py).

Each task sets its torch threads to `task_threads` (fixed at submission, travelling with the pickled
launcher) before it trains: `hydra.launcher.cpus_per_task`, or what the launcher derives without it
(manifold_sweeps/launch/cpu_threads.py).

(A module name starting with "_": Hydra's plugin scan skips it; the launchers import it.)
"""

import contextlib
import logging
import pickle
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from manifold_sweeps.launch.cpu_threads import use_threads
from manifold_sweeps.rundir.atomic import write_bytes
from manifold_sweeps.launch.packs import (
    Job, compose_jobs, compose_sweep, in_sweep_order, job_dir, plan_packs, refusal_ends_the_command, run_pack_jobs,
    sweep_jobs, validate_sweep,
)
from manifold_sweeps.launch.sweep_progress import SweepProgress

log = logging.getLogger(__name__)


class SubmititPacking:
    """Mixin before a hydra-submitit launcher class; subclasses set `pack_size` in __init__."""

    pack_size: int = 1
    packs: Optional[List[List[Job]]] = None
    composed_dir: str = ""  # this launch's folder of composed configs, absolute; travels with the pickled launcher
    threads: Optional[int] = None  # torch threads of each task; None: PyTorch's default
    progress_every_s: float = 60.0  # seconds between the sweep's progress lines in this process
    after_ctrl_c: str = ""  # what a Ctrl-C of this process does to the jobs, said when it comes

    def task_threads(self, n_tasks: int) -> Optional[int]:
        """The torch threads of each of the n_tasks tasks submitted together (None: PyTorch's default)."""
        return self.params.get("cpus_per_task")

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if self.pack_size == 1:
            self.packs = None
            with refusal_ends_the_command():
                jobs, configs = validate_sweep(self.hydra_context, self.config, job_overrides, initial_job_idx)
            self._keep_composed(jobs, configs)
            with self._stopped_by_ctrl_c(), self._progress(configs):
                return self.submit(job_overrides, initial_job_idx)
        jobs = sweep_jobs(job_overrides, initial_job_idx)
        configs = compose_sweep(self.hydra_context, self.config, jobs)
        with refusal_ends_the_command():
            packs = plan_packs(jobs, configs, self.pack_size)
        self._keep_composed(jobs, configs)
        self.packs = [[jobs[i] for i in pack] for pack in packs]
        labels = [[f"pack of {len(pack)}:", *(f"#{job.num}" for job in pack)] for pack in self.packs]
        with self._stopped_by_ctrl_c(), self._progress(configs):
            return in_sweep_order(packs, self.submit(labels, 0))

    def _progress(self, configs: List[DictConfig]) -> SweepProgress:
        """The sweep's progress line while this process waits for its jobs (launch/sweep_progress.py)."""
        return SweepProgress([job_dir(c) for c in configs], [int(c.train.steps) for c in configs],
                             self.progress_every_s)

    @contextlib.contextmanager
    def _stopped_by_ctrl_c(self) -> Iterator[None]:
        """A Ctrl-C while this process waits for its jobs: what becomes of them, and exit 130, without a
        traceback through submitit's wait loop."""
        try:
            yield
        except KeyboardInterrupt:
            log.error("interrupted (Ctrl-C): %s", self.after_ctrl_c)
            raise SystemExit(130) from None

    def submit(self, entries: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        """One submitit task per entry: a job's overrides, or a pack's label. Blocks until they have ended."""
        self.threads = self.task_threads(len(entries))
        return super().launch(entries, initial_job_idx)

    def __call__(self, sweep_overrides: List[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: Dict[type, Singleton]) -> Any:
        import submitit  # lazily, as hydra-submitit does: plugin discovery stays fast

        jobs = [Job(job_num, tuple(sweep_overrides))] if self.packs is None else self.packs[job_num]
        Singleton.set_state(singleton_state)
        setup_globals()
        use_threads(self.threads)
        task_id = submitit.JobEnvironment().job_id
        configs = [self._composed(job.num, task_id) for job in jobs]
        if any(c is None for c in configs):  # submitted by a version that kept no configs
            if self.packs is None:
                return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
            configs = compose_jobs(self.hydra_context, self.config, jobs, job_id=task_id)
        if self.packs is None:
            return run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=configs[0],
                           job_dir_key=job_dir_key, job_subdir_key="hydra.sweep.subdir")
        return run_pack_jobs(self.hydra_context, configs, job_dir_key)

    def _keep_composed(self, jobs: List[Job], configs: List[DictConfig]) -> None:
        launch = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        # Absolute, as submitit makes its own folder: a job may start in another working directory.
        self.composed_dir = str(Path(str(self.params["submitit_folder"])).parent.absolute() / "composed" / launch)
        for job, config in zip(jobs, configs):
            write_bytes(Path(self.composed_dir) / f"{job.num}.pkl", pickle.dumps(config))

    def _composed(self, num: int, task_id: str) -> Optional[DictConfig]:
        """Job `num`'s config as composed at submission, with the id of the task running it."""
        if not self.composed_dir:
            return None
        path = Path(self.composed_dir) / f"{num}.pkl"
        try:
            config = pickle.loads(path.read_bytes())
        except FileNotFoundError:
            log.warning("%s, this job's config as composed at submission, is gone: composing it again from conf/, "
                        "which may have changed since", path)
            return None
        with open_dict(config):
            config.hydra.job.id = task_id
        return config
