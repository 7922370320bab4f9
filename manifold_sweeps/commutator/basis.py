"""The execution basis: top principal directions of each attention matrix's weight trajectory.

For every layer and matrix (a "block": W_Q, W_K, W_V or W_O of one layer, d*d coordinates), the
top-k principal directions of its centred snapshots, as in the paper's eq. (1) and its code's
execution basis. Blocks occupy disjoint coordinates, so the union of the blocks' orthonormal
directions is orthonormal in the coordinates of all attention matrices.

During training the basis is causal (the snapshots taken so far); the tables also use the
whole finished trajectory. The d^2 x d^2 covariance is never formed: the directions come from the
n x n Gram matrix of the centred snapshots, V = Xc^T U / sqrt(lambda).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

# Gram eigenvalues below RTOL x the largest, or below ATOL x the snapshots' squared norm, are
# rounding, not motion: n snapshots span at most n - 1 directions once centred, and float32 weights
# that move at all move by >= 1e-7 of their size (an eigenvalue >= 1e-14 of the squared norm).
RTOL = 1e-10
ATOL = 1e-20


def top_directions(snapshots: torch.Tensor, k: int) -> torch.Tensor:
    """snapshots (n, D) -> (D, j) orthonormal columns, j <= min(k, n - 1), largest variance first."""
    x = snapshots.double()
    floor = ATOL * x.square().sum()
    x = x - x.mean(dim=0)  # (n, D)
    lam, u = torch.linalg.eigh(x @ x.T)  # ascending; (n,), (n, n)
    lam, u = lam.flip(0)[:k], u.flip(1)[:, :k]
    keep = (lam > RTOL * lam[0]) & (lam > floor)
    return x.T @ u[:, keep] / lam[keep].sqrt()  # (D, j)


def trajectory_basis(blocks: Sequence[np.ndarray], k: int,
                     device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """blocks: each attention matrix's snapshots, (n, d, d), in trajectory order (layer-major, then
    W_Q, W_K, W_V, W_O): arrays (memory-mapped ones are read one matrix at a time), or tensors
    already on `device` (the training loop's resident snapshots, training/snapshots.py).

    Returns basis (n_blocks, d*d, k) float64 on `device`, with zero columns where a block has fewer
    than k directions, and dims (n_blocks,) int64: each block's number of directions. On a GPU the
    snapshots go over as they are stored (float32) and are widened there: the CPU would otherwise
    spend 0.3 to 0.7 s per run and measurement at 201 snapshots (one thread), about a minute per
    measurement of a 120-run pack late in training.
    """
    size = int(np.prod(blocks[0].shape[1:]))
    basis = torch.zeros(len(blocks), size, k, dtype=torch.float64, device=device)
    dims = torch.zeros(len(blocks), dtype=torch.int64)
    host = torch.device(device).type == "cpu"
    for b, snapshots in enumerate(blocks):
        if isinstance(snapshots, torch.Tensor):
            x = snapshots.reshape(len(snapshots), size)
        else:
            x = torch.from_numpy(np.array(snapshots, dtype=np.float64 if host else np.float32).reshape(len(snapshots), size))
        v = top_directions(x.to(device), k)  # x: (n, d*d)
        basis[b, :, : v.shape[1]] = v
        dims[b] = v.shape[1]
    return basis, dims
