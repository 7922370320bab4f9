"""The whole sweep's progress, logged by the process that launched it (`hydra.launcher.progress_every_s`).

The `local` and `slurm` launchers block until every job of the sweep has ended, for hours on a
cluster, while each run's progress lines go to its own log. So while they wait, a thread of the
launching process reads the status.json of every run of the launch every `every_s` seconds and logs
one line: steps done over all runs, the rate since the launch, an ETA, and how many runs are in each
state. Reading the status files needs nothing from the jobs, wherever they run.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path

from ..rundir.status import effective_state, read_status
from ..training.progress import Progress

log = logging.getLogger(__name__)

# A run that ended early (diverged, failed) will train no further: its remaining steps count as done.
ENDED = ("completed", "diverged", "failed")
ORDER = ("completed", "diverged", "failed", "running", "interrupted", "waiting", "unreadable")


def sweep_state(run_dirs: list[Path], total_steps: list[int]) -> tuple[int, Counter]:
    """(steps done over all runs, runs per state); a run with no status.json yet is `waiting`."""
    done, states = 0, Counter()
    for run_dir, total in zip(run_dirs, total_steps):
        status = read_status(run_dir)
        state = "waiting" if status is None else effective_state(status)
        states[state] += 1
        if state in ENDED:
            done += total
        elif status is not None:
            done += min(int(status.get("last_step") or 0), total)
    return done, states


def describe(states: Counter) -> str:
    n = sum(states.values())
    parts = [f"{states[s]} {s}" for s in ORDER if states[s]]
    return f"{n} run(s): {', '.join(parts)}"


class SweepProgress:
    """A context manager: logs the sweep's progress every `every_s` seconds until it exits, then once more
    unless nothing changed since the last line."""

    def __init__(self, run_dirs: list[Path], total_steps: list[int], every_s: float, logger: logging.Logger = log):
        self.run_dirs, self.total_steps, self.every_s, self.log = run_dirs, total_steps, every_s, logger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)
        self._progress: Progress | None = None
        self._last: tuple[int, Counter] | None = None  # what the last line said

    def __enter__(self) -> "SweepProgress":
        # Runs finished by an earlier launch count as done from the start: the rate is this launch's.
        done, _ = sweep_state(self.run_dirs, self.total_steps)
        self._progress = Progress(sum(self.total_steps), done, self.every_s, self.log, unit="sweep steps")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.report(unless_unchanged=True)

    def report(self, unless_unchanged: bool = False) -> None:
        done, states = sweep_state(self.run_dirs, self.total_steps)
        if unless_unchanged and (done, states) == self._last:
            return  # the last line already says it
        self._last = (done, states)
        self._progress.maybe_report(done, extra=lambda: describe(states), force=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.report()
            except Exception as err:  # a progress line must never end the launch
                self.log.warning("could not read the sweep's progress: %s", err)
