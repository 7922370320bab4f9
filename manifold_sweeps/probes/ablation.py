"""Ablations that reach the output: edit the residual stream at the probe layer at every position,
then run the rest of the network to the readout.

Per m, accuracy on the run's held-out examples for:
    clean           the model as trained
    reconstruction  the stream replaced by the SAE's reconstruction (the baseline for ablations)
    zero_selected   the reconstruction with one group's task-correlated latents zeroed
    zero_random     the reconstruction with as many random live latents zeroed (control), averaged
                    over trials
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.transformer import Transformer
from .activations import logits_from, residual_stream
from .sae import SparseAutoencoder

CHUNK = 256  # examples per pass: bounds the (examples * T) x n_latents activations held at once


@dataclass(frozen=True)
class Variant:
    latent_group: str  # "none" for clean and reconstruction
    ablation: str  # clean | reconstruction | zero_selected | zero_random
    latents: tuple[int, ...] = ()
    trial: int = 0


def random_controls(group: str, latents: torch.Tensor, alive: torch.Tensor, trials: int, gen: torch.Generator):
    """`trials` draws of len(latents) live latents outside `latents` (fewer if too few are left)."""
    candidates = alive.clone()
    candidates[latents] = False
    pool = candidates.nonzero().squeeze(1).cpu()
    k = min(len(latents), len(pool))
    return [Variant(group, "zero_random", tuple(pool[torch.randperm(len(pool), generator=gen)[:k]].tolist()), t)
            for t in range(trials)]


@torch.no_grad()
def ablation_accuracy(
    model: Transformer, sae: SparseAutoencoder, layer: int, tokens: torch.Tensor, labels: torch.Tensor,
    variants: list[Variant],
) -> list[float]:
    """Accuracy of each variant on one m's examples tokens (B, T), labels (B,)."""
    correct = torch.zeros(len(variants), dtype=torch.float64)
    for start in range(0, len(tokens), CHUNK):
        tk, lb = tokens[start : start + CHUNK], labels[start : start + CHUNK]
        b = len(tk)
        x = residual_stream(model, tk, layer)  # (b*T, d)
        x_hat, h = sae(x)
        for i, v in enumerate(variants):
            if v.ablation == "clean":
                logits = model(tk.unsqueeze(0))[0]
            elif v.ablation == "reconstruction":
                logits = logits_from(model, x_hat, layer, b)
            else:
                edited = sae.without(x_hat, h, torch.tensor(v.latents, dtype=torch.long, device=x.device))
                logits = logits_from(model, edited, layer, b)
            correct[i] += float((logits.argmax(dim=-1) == lb).sum())
    return (correct / len(tokens)).tolist()
