"""Task-correlated latents: Pearson correlation of every latent with every task variable, and the
top latents per variable.

Correlations are accumulated over chunks of positions from sums (float64), so the N x n latent
matrix of a whole evaluation set is never held at once. A variable is correlated only over the
positions where it is defined (value_token: value positions). A latent or variable that is constant
over those positions has no correlation (NaN): it is never selected.
"""

from __future__ import annotations

import torch


class CorrelationAccumulator:
    def __init__(self, n_variables: int, n_latents: int, device):
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=device)  # noqa: E731
        self.n = zeros(n_variables)  # positions where each variable is defined
        self.sv, self.svv = zeros(n_variables), zeros(n_variables)
        self.sh, self.shh, self.shv = (zeros(n_variables, n_latents) for _ in range(3))

    def add(self, h: torch.Tensor, values: torch.Tensor, defined: torch.Tensor) -> None:
        """h (N, n) latents, values (N, K) variables, defined (N, K) bool."""
        h = h.double()
        w = defined.double()  # (N, K)
        v = values.double() * w  # undefined entries contribute nothing
        self.n += w.sum(dim=0)
        self.sv += v.sum(dim=0)
        self.svv += (v * v).sum(dim=0)
        self.sh += w.T @ h  # (K, n)
        self.shh += w.T @ (h * h)
        self.shv += v.T @ h

    def result(self) -> torch.Tensor:
        """(K, n) Pearson correlations; NaN where a latent or variable does not vary."""
        n = self.n.clamp_min(1).unsqueeze(1)  # (K, 1)
        mean_h, mean_v = self.sh / n, (self.sv / n.squeeze(1)).unsqueeze(1)
        cov = self.shv / n - mean_h * mean_v
        var_h = (self.shh / n - mean_h**2).clamp_min(0)
        var_v = (self.svv.unsqueeze(1) / n - mean_v**2).clamp_min(0)
        denom = (var_h * var_v).sqrt()
        # Relative floor: one-pass variances of a constant come out as rounding noise, not 0.
        const_h = var_h <= 1e-12 * (self.shh / n).clamp_min(1e-300)
        const_v = var_v <= 1e-12 * (self.svv.unsqueeze(1) / n).clamp_min(1e-300)
        r = cov / denom
        r[const_h | const_v.expand_as(r) | (denom == 0)] = float("nan")
        return r.clamp(-1, 1)


def top_latents(corr: torch.Tensor, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per variable (row of corr (K, n)), the k latents of largest |correlation| and their signed
    correlations; fewer (possibly none) when fewer latents have a correlation."""
    out = []
    for row in corr:
        score = row.abs().nan_to_num(nan=-1.0)
        idx = score.topk(min(k, row.numel())).indices
        idx = idx[score[idx] >= 0]
        out.append((idx.cpu(), row[idx].cpu()))
    return out
