"""Snapshots written to the run directories by a writer thread, off the training loop.

The loop copies a snapshot's weights at once (the next update changes them), but writing them into
every run's trajectory files (a row written and synced, then the atomic steps file) takes 2.5 to 4
ms per run on local ext4: 0.46 s per snapshot of a 120-run pack, which the loop spent idle, more on
a network file system. The writer thread does it while the next steps train; its system calls
release the GIL. On a GPU the loop takes the copy on the device and the writer thread brings it to
the host, so the loop does not wait for that transfer either.

At most one snapshot waits behind the one being written: if the disk falls behind, the loop blocks
instead of holding more copies. Rows are written in order. Whatever reads the trajectory or records
its length (checkpoints, commutator measurements, the end of training) first calls `wait()`, which
also raises any error the writer met; a run's steps file never claims a row not fully written, so a
crash at any point leaves every trajectory consistent.
"""

from __future__ import annotations

import queue
import threading

import torch

from ..rundir.trajectory import TrajectoryWriter


class SnapshotWriter:
    def __init__(self):
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_all, name="snapshot-writer", daemon=True)
        self._thread.start()

    def submit(self, step: int, weights: torch.Tensor, targets: list[tuple[int, TrajectoryWriter]]) -> None:
        """Write weights[p] (P, n_layers, 4, d, d), a copy no one else changes, as `step`'s row of
        each (p, trajectory) of targets."""
        self._raise()
        self._queue.put((step, weights, targets))

    def wait(self) -> None:
        """Return once every submitted snapshot is written; raise the writer's error if it met one."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Write what was submitted and end the thread; errors are left to wait()."""
        self._queue.put(None)
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing a weight snapshot failed: {self._error}") from self._error

    def _write_all(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:  # after a failure, rows would go out of order
                    step, weights, targets = item
                    rows = weights.cpu().numpy()
                    for p, trajectory in targets:
                        trajectory.append(step, rows[p])
            except BaseException as err:  # raised in the training loop by its next submit or wait
                self._error = err
            finally:
                self._queue.task_done()
