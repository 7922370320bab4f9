"""Weight snapshots during training: how a pack's snapshot is written, and where the commutator
basis reads them on a GPU.

The loop copies a snapshot's weights at once (the next update changes them) and hands the writing
to the background writer (background_writer.py): `write_snapshot` writes each run's row while the
next steps train.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..rundir.trajectory import TrajectoryWriter


def write_snapshot(step: int, weights: torch.Tensor, targets: list[tuple[int, TrajectoryWriter]]) -> None:
    """Write weights[p] (P, n_layers, 4, d, d) as `step`'s row of each (p, trajectory) of targets.

    Runs on the background writer (background_writer.py): on a GPU the copy to the host happens
    there too, so the loop does not wait for that transfer either.
    """
    rows = weights.cpu().numpy()
    for p, trajectory in targets:
        trajectory.append(step, rows[p])


class ResidentSnapshots:
    """Every run's snapshots so far, kept on the training device for the commutator measurements.

    Each measurement builds every run's execution basis from all its snapshots so far. Read back from
    the trajectory files, that is 105 MB per run late in a `paper` run: for a 120-run pack on a GPU,
    some 12.6 GB copied out of the page cache and over PCIe at every measurement (estimated 2 to 4 s,
    41 times per sweep). Kept resident (12.6 GB for that pack; only where it takes at most half the
    free device memory, see `fits`), a measurement reads them where they are, and the snapshot copy
    the writer thread sends to disk is the resident row itself.
    """

    def __init__(self, shape: tuple[int, ...], device: torch.device):
        # NaN until written: a row read before it is stored or loaded would poison the basis visibly.
        self.rows = torch.full(shape, float("nan"), device=device)  # (n_planned, P, n_layers, 4, d, d)

    @classmethod
    def for_pack(cls, n_planned: int, n_runs: int, n_layers: int, d: int,
                 device: torch.device) -> "ResidentSnapshots | None":
        """Room for every planned snapshot of the pack where it `fits`, else None (read from the files)."""
        shape = (n_planned, n_runs, n_layers, 4, d, d)
        return cls(shape, device) if cls.fits(device, math.prod(shape) * 4) else None

    @staticmethod
    def fits(device: torch.device, nbytes: int) -> bool:
        """On a GPU with room to spare; never on the CPU, whose page cache already holds the files."""
        return device.type == "cuda" and nbytes <= torch.cuda.mem_get_info(device)[0] // 2

    def load(self, p: int, saved: np.ndarray) -> None:
        """Run p's snapshots before a resume, from its trajectory file: (n, n_layers, 4, d, d)."""
        if len(saved):
            self.rows[: len(saved), p].copy_(torch.from_numpy(np.array(saved)))  # the map is read-only

    def row(self, i: int) -> torch.Tensor:
        """Snapshot row i as the (P, n_layers * 4, d, d) output of stacking the pack's attention matrices."""
        out = self.rows[i]  # (P, n_layers, 4, d, d)
        return out.view(out.shape[0], -1, *out.shape[-2:])

    def of_run(self, p: int, n: int) -> torch.Tensor:
        """Run p's first n snapshots, (n, n_layers, 4, d, d), on the device."""
        return self.rows[:n, p]
