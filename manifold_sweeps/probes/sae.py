"""Sparse autoencoder (the paper's eq. 8) and its quality measures.

With activations as row vectors x (d,), and n latents:

    h     = ReLU((x/s - b_dec) @ W_enc + b_enc)     (n,)     the paper's h = ReLU(W_e (x - b_d) + b_e)
    x_hat = s * (h @ W_dec + b_dec)                 (d,)     the paper's x_hat = W_d h + b_d
    loss  = ||x_hat/s - x/s||^2 + lambda * ||h||_1           eq. (8), mean over the batch

W_e = W_enc^T and W_d = W_dec^T in the paper's column convention; each row of W_dec (a latent's
decoder direction) is kept at unit norm, so the L1 penalty cannot be dodged by shrinking h and
growing W_dec. s is one scalar per SAE (the activations' RMS deviation per dimension, fixed before
training), so lambda means the same at every layer and checkpoint; s = 1 is plain eq. (8).
Subtracting b_dec before encoding follows Bricken et al. (2023), "Towards Monosemanticity".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..training.progress import Progress

log = logging.getLogger(__name__)


class SparseAutoencoder(nn.Module):
    def __init__(self, d: int, n_latents: int, scale: float = 1.0):
        super().__init__()
        self.W_enc = nn.Parameter(torch.zeros(d, n_latents))
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.W_dec = nn.Parameter(torch.zeros(n_latents, d))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("scale", torch.tensor(float(scale)))

    @property
    def n_latents(self) -> int:
        return self.W_enc.shape[1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, d) -> h (N, n), non-negative."""
        return torch.relu((x / self.scale - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """h (N, n) -> x_hat (N, d), in the activations' own units."""
        return (h @ self.W_dec + self.b_dec) * self.scale

    def without(self, x_hat: torch.Tensor, h: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """decode(h with `latents` zeroed), computed as x_hat minus those latents' share alone.

        Equal to decoding the zeroed h up to rounding, at k/n of the cost (k latents out of n).
        """
        # index_select: a column gather that is several times faster than h[:, latents] on the CPU.
        return x_hat - (h.index_select(1, latents) @ self.W_dec.index_select(0, latents)) * self.scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encode(x)
        return self.decode(h), h

    @torch.no_grad()
    def normalise_decoder_(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass
class SAESettings:
    n_latents: int
    l1: float  # lambda
    steps: int
    lr: float
    batch_size: int


INDEX_CHUNK = 100


def train_sae(x: torch.Tensor, settings: SAESettings, gen: torch.Generator, progress_every_s: float = 10.0):
    """Fit an SAE to activations x (N, d); every draw (init, minibatches) comes from `gen` (CPU).

    Returns (sae, final_loss) where final_loss is the mean loss of the last 10% of updates.
    """
    N, d = x.shape
    mean = x.mean(dim=0)
    scale = float(((x - mean).pow(2).sum(dim=1).mean() / d).sqrt().clamp_min(1e-12))
    sae = SparseAutoencoder(d, settings.n_latents, scale).to(x.device)
    with torch.no_grad():
        # Random unit decoder directions, encoder tied to them, b_dec at the data mean: every latent
        # starts alive and reads its own direction. The d/n factor keeps the first reconstructions (about
        # half of n latents active, each projecting x onto a random direction) near the data's scale.
        sae.W_dec.copy_(torch.randn(settings.n_latents, d, generator=gen))
        sae.normalise_decoder_()
        sae.W_enc.copy_(sae.W_dec.T * (d / settings.n_latents))
        sae.b_dec.copy_(mean / scale)
    opt = torch.optim.Adam(sae.parameters(), lr=settings.lr)
    progress = Progress(settings.steps, 0, progress_every_s, log, unit="SAE steps")
    tail = max(1, settings.steps // 10)
    tail_loss = torch.zeros((), device=x.device)
    for step in range(settings.steps):
        if step % INDEX_CHUNK == 0:
            # The minibatch indices of INDEX_CHUNK steps in one draw and one copy to the device, not a
            # copy that waits on the device every step; the same numbers as one draw per step.
            indices = torch.randint(N, (min(INDEX_CHUNK, settings.steps - step), settings.batch_size),
                                    generator=gen).to(x.device)
        batch = x[indices[step % INDEX_CHUNK]]  # (b, d)
        x_hat, h = sae(batch)
        mse = ((x_hat - batch) / sae.scale).pow(2).sum(dim=1).mean()
        loss = mse + settings.l1 * h.sum(dim=1).mean()  # h >= 0, so its L1 norm is its sum
        opt.zero_grad(set_to_none=True)
        loss.backward()
        loss = loss.detach()
        opt.step()
        sae.normalise_decoder_()
        if step >= settings.steps - tail:
            tail_loss += loss
        progress.maybe_report(step + 1, lambda: f"loss {loss.item():.4f}")
    return sae, float(tail_loss) / tail


class QualityAccumulator:
    """Reconstruction R^2, mean active latents (L0) and dead latents over chunks of activations."""

    def __init__(self, n_latents: int, device):
        self.sq_err = 0.0
        self.sum_x = None
        self.sum_sq_x = 0.0
        self.n = 0
        self.active = 0.0
        self.fired = torch.zeros(n_latents, dtype=torch.bool, device=device)

    @torch.no_grad()
    def add(self, x: torch.Tensor, x_hat: torch.Tensor, h: torch.Tensor) -> None:
        x64 = x.double()
        self.sq_err += float((x64 - x_hat.double()).pow(2).sum())
        self.sum_x = x64.sum(dim=0) if self.sum_x is None else self.sum_x + x64.sum(dim=0)
        self.sum_sq_x += float(x64.pow(2).sum())
        self.n += x.shape[0]
        active = h > 0
        self.active += float(active.sum())
        self.fired |= active.any(dim=0)

    def result(self) -> dict[str, float]:
        # Total variance sum_i ||x_i - mean||^2 = sum ||x||^2 - ||sum x||^2 / n.
        total = self.sum_sq_x - float(self.sum_x.pow(2).sum()) / self.n
        return {
            "sae_r2": 1.0 - self.sq_err / total if total > 0 else float("nan"),
            "sae_l0": self.active / self.n,
            "sae_dead_latents": int((~self.fired).sum()),
        }
