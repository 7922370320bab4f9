"""How many CPU threads each job of a submitit launcher trains with: `hydra.launcher.cpus_per_task`.

PyTorch gives every process as many threads as the machine has cores. Jobs started side by side on
one machine then fight over the cores, and OpenMP threads that wait for a descheduled team-mate turn
a step into many: two `paper` runs of 2 threads each on a 2-core machine ran at 6.8 steps/s each,
against 80 for one alone and 48 each at 1 thread. So each job sets its thread count to its CPU
share before it trains: `cpus_per_task` when given (SLURM reserves that many CPUs for the task), else,
for the local launcher, this machine's cores shared out among the processes running together (one
wave of at most `max_parallel`).

Imports torch lazily: Hydra's plugin scan imports the launchers.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def shared_cores(n_processes: int) -> int:
    """Threads per process when n_processes train at once on this machine: its cores shared out, at least 1."""
    return max(1, usable_cores() // max(1, n_processes))


def use_threads(threads: int | None) -> None:
    """Set this process's torch threads (None: leave PyTorch's default)."""
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)
