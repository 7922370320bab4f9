"""Packed seeds for hydra-submitit's launchers (our `local` and `slurm`): one submitit task per pack.

hydra-submitit's `launch` submits one task per entry of the list it is given, and each task calls
the (pickled) launcher with the entry's overrides and number. With pack_size > 1 the entries are one
label per pack (they are only logged), the packs travel in `self.packs`, and `__call__` trains the
pack whose index comes as the job number. submitit requeues a task with the same arguments, so a
preempted pack resumes as the same pack. pack_size=1 leaves hydra-submitit's behaviour unchanged,
but for the validation of every job before anything is submitted.

(A module name starting with "_": Hydra's plugin scan skips it; the launchers import it.)
"""

from typing import Any, Dict, List, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, setup_globals

from manifold_sweeps.launch.packs import (
    Job, compose_jobs, compose_sweep, in_sweep_order, plan_packs, refusal_ends_the_command, run_pack_jobs, sweep_jobs, validate_sweep,
)


class SubmititPacking:
    """Mixin before a hydra-submitit launcher class; subclasses set `pack_size` in __init__."""

    pack_size: int = 1
    packs: Optional[List[List[Job]]] = None

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if self.pack_size == 1:
            self.packs = None
            with refusal_ends_the_command():
                validate_sweep(self.hydra_context, self.config, job_overrides, initial_job_idx)
            return self.submit(job_overrides, initial_job_idx)
        jobs = sweep_jobs(job_overrides, initial_job_idx)
        with refusal_ends_the_command():
            packs = plan_packs(jobs, compose_sweep(self.hydra_context, self.config, jobs), self.pack_size)
        self.packs = [[jobs[i] for i in pack] for pack in packs]
        labels = [[f"pack of {len(pack)}:", *(f"#{job.num}" for job in pack)] for pack in self.packs]
        return in_sweep_order(packs, self.submit(labels, 0))

    def submit(self, entries: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        """One submitit task per entry: a job's overrides, or a pack's label."""
        return super().launch(entries, initial_job_idx)

    def __call__(self, sweep_overrides: List[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: Dict[type, Singleton]) -> Any:
        if self.packs is None:
            return super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        import submitit  # lazily, as hydra-submitit does: plugin discovery stays fast

        Singleton.set_state(singleton_state)
        setup_globals()
        configs = compose_jobs(self.hydra_context, self.config, self.packs[job_num],
                               job_id=submitit.JobEnvironment().job_id)
        return run_pack_jobs(self.hydra_context, configs, job_dir_key)
