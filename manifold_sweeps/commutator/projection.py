"""How much of a commutator lies in the execution subspace, against block-matched random subspaces.

All quantities live in the coordinates of the attention matrices (blocks of d*d, trajectory order):
    rho_exec        = ||P delta|| / ||delta||, P the projector onto the execution basis
    outside_energy  = 1 - rho_exec^2, the share of ||delta||^2 outside the subspace (the paper's
                      code reported 1 - rho, which is neither the norm nor the energy fraction)
    rho_random      = the same ratio for random subspaces with as many directions in each block as
                      the execution basis has there, averaged over the trials
    exec_random_ratio = rho_exec / rho_random
For an isotropic delta, rho_random is about sqrt(K / N): K directions out of N coordinates. Matching
block by block keeps the baseline on the coordinates the basis can reach (the paper's code drew
it over every parameter, dead ones included, which inflated the ratio about 1.67x).
"""

from __future__ import annotations

import torch


def projected_norm(delta: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """||P delta|| per sample: delta (S, n_blocks, D), basis (n_blocks, D, k) orthonormal per block -> (S,)."""
    coef = torch.einsum("snd,ndk->snk", delta, basis)  # (S, n_blocks, k)
    return coef.square().sum(dim=(1, 2)).sqrt()


def random_block_basis(dims: torch.Tensor, size: int, k: int, generator: torch.Generator,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniformly random orthonormal directions, dims[b] of them inside block b: (n_blocks, size, k) on device.

    The QR factor of a Gaussian matrix has Haar-distributed columns; columns past dims[b] are zeroed.
    The Gaussians come from the generator's device, and are moved: a CPU stream gives the same
    subspaces wherever the basis lives (a run measured on a GPU, its `_final` rows on the CPU).
    """
    gauss = torch.randn(len(dims), size, k, generator=generator, dtype=torch.float64, device=generator.device).to(device)
    q, _ = torch.linalg.qr(gauss)  # (n_blocks, size, k)
    used = torch.arange(k, device=q.device) < dims.to(q.device)[:, None]
    return q * used.unsqueeze(1)  # zero the unused columns


def projection_stats(
    delta: torch.Tensor, basis: torch.Tensor, dims: torch.Tensor, trials: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """rho_exec, outside_energy, rho_random, exec_random_ratio per sample, each (S,) float64.

    delta (S, n_blocks, D); basis (n_blocks, D, k) and dims (n_blocks,) from `trajectory_basis`.
    Without any basis direction (one snapshot so far) the projections are undefined: NaN.
    """
    delta = delta.double()
    norm = delta.square().sum(dim=(1, 2)).sqrt()
    rho_exec = projected_norm(delta, basis) / norm
    rho_random = torch.zeros_like(rho_exec)
    for _ in range(trials):  # one trial at a time: n_blocks * D * k floats each
        random_basis = random_block_basis(dims, basis.shape[1], basis.shape[2], generator, basis.device)
        rho_random += projected_norm(delta, random_basis) / norm
    rho_random /= trials
    if int(dims.sum()) == 0:
        rho_exec = rho_random = torch.full_like(norm, float("nan"))
    return {
        "rho_exec": rho_exec,
        "outside_energy": 1 - rho_exec.square(),
        "rho_random": rho_random,
        "exec_random_ratio": rho_exec / rho_random,
    }
