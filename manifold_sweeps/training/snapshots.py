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

import numpy as np
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


class ResidentSnapshots:
    """Every run's snapshots so far, kept on the training device for the commutator measurements.

    Each measurement builds every run's execution basis from all its snapshots so far. Read back from
    the trajectory files, that is 105 MB per run late in a `paper` run: for a 120-run pack on a GPU,
    some 12.6 GB copied out of the page cache and over PCIe at every measurement (estimated 2 to 4 s,
    41 times per sweep). Kept resident (12.6 GB for that pack; only where it takes at most half the
    free device memory, see `fits`), a measurement reads them where they are, and the snapshot copy
    the writer thread sends to disk is the resident row itself.
    """

    def __init__(self, n_planned: int, n_runs: int, n_layers: int, d: int, device: torch.device):
        # NaN until written: a row read before it is stored or loaded would poison the basis visibly.
        self.rows = torch.full((n_planned, n_runs, n_layers, 4, d, d), float("nan"), device=device)

    @staticmethod
    def nbytes(n_planned: int, n_runs: int, n_layers: int, d: int) -> int:
        return n_planned * n_runs * n_layers * 4 * d * d * 4

    @staticmethod
    def fits(device: torch.device, nbytes: int) -> bool:
        """On a GPU with room to spare; never on the CPU, whose page cache already holds the files."""
        return device.type == "cuda" and nbytes <= torch.cuda.mem_get_info(device)[0] // 2

    def load(self, p: int, saved: np.ndarray) -> None:
        """Run p's snapshots before a resume, from its trajectory file: (n, n_layers, 4, d, d)."""
        if len(saved):
            self.rows[: len(saved), p].copy_(torch.from_numpy(np.array(saved)))  # the map is read-only

    def store(self, row: int, matrices: list[torch.Tensor]) -> torch.Tensor:
        """Copy the pack's attention matrices (each (P, d, d), trajectory order) into `row`; returns it."""
        out = self.rows[row]  # (P, n_layers, 4, d, d)
        torch.stack(matrices, dim=1, out=out.view(out.shape[0], -1, *out.shape[-2:]))
        return out

    def of_run(self, p: int, n: int) -> torch.Tensor:
        """Run p's first n snapshots, (n, n_layers, 4, d, d), on the device."""
        return self.rows[:n, p]
