"""The SGD commutator of two plain gradient steps (paper eq. 3-5), for every run of a packed model.

With batches A and B and step size eta,
    theta_AB = theta0 - eta g_A(theta0) - eta g_B(theta0 - eta g_A(theta0))   (theta_BA likewise)
    delta    = theta_AB - theta_BA
             = eta [(g_A(theta0 - eta g_B) - g_A(theta0)) - (g_B(theta0 - eta g_A) - g_B(theta0))].
The second line is the one computed. Subtracting two full parameter vectors, as the paper's code
did, loses the O(eta^2) commutator against O(1) weights to float32 rounding (D inflated by > 25% in
4 of 15 checked samples); the gradient differences are O(eta) and keep their precision. The
perturbed points theta0 - eta g must be held precisely too: a trained model's eta g is about 1e-7
per coordinate next to O(1) weights, which float32 rounds by some 30%, so `commutator.precision`
defaults to float64 (float32 put D and rho_exec off by up to 2x once trained).

The model is never modified: gradients come from `torch.func.functional_call` on detached copies of
the weights and `torch.autograd.grad`, so neither the weights, their `.grad` nor the optimizer see
the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..model.transformer import Transformer

Params = dict[str, torch.Tensor]
# grad_pair(theta_a, theta_b) -> (g_A(theta_a), g_B(theta_b)), over the parameters that get a gradient.
GradPair = Callable[[Params, Params], tuple[Params, Params]]


def stable_commutator(grad_pair: GradPair, theta0: Params, eta: float) -> tuple[Params, Params, Params]:
    """(delta, g_A(theta0), g_B(theta0)), keyed by the parameters that get a gradient."""
    g_a, g_b = grad_pair(theta0, theta0)
    after_b = {n: theta0[n] - eta * g_b[n] for n in g_a}
    after_a = {n: theta0[n] - eta * g_a[n] for n in g_a}
    g_a_after_b, g_b_after_a = grad_pair(after_b, after_a)
    delta = {n: eta * ((g_a_after_b[n] - g_a[n]) - (g_b_after_a[n] - g_b[n])) for n in g_a}
    return delta, g_a, g_b


def model_grad_pair(model: Transformer, batch_a, batch_b) -> GradPair:
    """grad_pair for a packed model of P runs; batch_x = (tokens (P, B, T), labels (P, B)).

    Both gradients come from one pass over 2P stacked copies of the runs: copy p sees A with
    theta_a's run p, copy P+p sees B with theta_b's run p.
    """
    tokens = torch.cat([batch_a[0], batch_b[0]])  # (2P, B, T)
    labels = torch.cat([batch_a[1], batch_b[1]])  # (2P, B)
    R = tokens.shape[0]

    def grad_pair(theta_a: Params, theta_b: Params) -> tuple[Params, Params]:
        P = R // 2
        params = {n: torch.cat([theta_a[n], theta_b[n]]).detach().requires_grad_() for n in theta_a}  # (2P, ...)
        logits = functional_call(model, params, (tokens,))  # (2P, B, C)
        losses = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(R, -1).mean(1)
        # Summing the copies' losses gives each copy exactly its own gradient: copies share no weights.
        grads = torch.autograd.grad(losses.sum(), list(params.values()), allow_unused=True)
        # A parameter that gets no gradient (None) is left out of every norm.
        used = {n: g for n, g in zip(params, grads) if g is not None}
        return {n: g[:P] for n, g in used.items()}, {n: g[P:] for n, g in used.items()}

    return grad_pair


@dataclass
class PairResult:
    """One commutator sample for each of the P runs."""

    delta_attention: torch.Tensor  # (P, n_layers * 4, d * d): delta on W_Q, W_K, W_V, W_O, trajectory order
    delta_norm: torch.Tensor  # (P,) ||delta|| over every parameter that gets a gradient
    delta_norm_attention: torch.Tensor  # (P,) ||delta|| over the attention matrices alone
    step_norm_a: torch.Tensor  # (P,) ||eta g_A(theta0)||
    step_norm_b: torch.Tensor  # (P,) ||eta g_B(theta0)||
    cos_ab: torch.Tensor  # (P,) cosine between g_A(theta0) and g_B(theta0)

    @property
    def defect(self) -> torch.Tensor:
        """D = ||delta|| / (||eta g_A|| ||eta g_B||): scale-free, O(||H||) for small eta."""
        return self.delta_norm / (self.step_norm_a * self.step_norm_b)


def _sq_norms(params: Params) -> torch.Tensor:
    """Per-run squared norm over every tensor of the dict, (P,) float64."""
    return sum(t.double().flatten(1).square().sum(1) for t in params.values())


# On the CPU, one pass over many runs' float64 activations spills the cache: a 20-run pack took
# 310 ms per run and sample, against 97 ms in passes of 4 runs and 105 ms for one run (paper preset,
# 2 threads). A GPU wants many runs in one pass, but not a whole large pack: a run's two float64
# copies keep about 81 MB for the backward pass (paper preset, measured on the CPU), so 32 runs hold
# some 2.6 GB, where a 120-run pack's 10 GB and more would not fit on a 16 GB GPU (not measured on one).
CPU_RUNS_PER_PASS = 4
GPU_RUNS_PER_PASS = 32


def measure_pair(model: Transformer, batch_a, batch_b, eta: float, dtype: torch.dtype = torch.float32) -> PairResult:
    """The commutator of batches A and B at the model's current weights, for every run: in passes of
    CPU_RUNS_PER_PASS runs on the CPU, GPU_RUNS_PER_PASS on a GPU. Each run's numbers depend on its
    own weights and batches alone."""
    P = batch_a[0].shape[0]
    per_pass = GPU_RUNS_PER_PASS if batch_a[0].device.type == "cuda" else CPU_RUNS_PER_PASS
    parts = [_measure_runs(model, slice(i, i + per_pass), batch_a, batch_b, eta, dtype) for i in range(0, P, per_pass)]
    if len(parts) == 1:
        return parts[0]
    return PairResult(*(torch.cat([getattr(part, f.name) for part in parts]) for f in fields(PairResult)))


def _measure_runs(model: Transformer, runs: slice, batch_a, batch_b, eta: float, dtype: torch.dtype) -> PairResult:
    """measure_pair for the runs in the slice (theta0 and the batches sliced along the run dimension)."""
    theta0 = {n: p.detach()[runs].to(dtype) for n, p in model.named_parameters()}
    batch_a, batch_b = (batch_a[0][runs], batch_a[1][runs]), (batch_b[0][runs], batch_b[1][runs])
    delta, g_a, g_b = stable_commutator(model_grad_pair(model, batch_a, batch_b), theta0, eta)
    names = {id(p): n for n, p in model.named_parameters()}
    attention = [names[id(p)] for p in model.attention_matrices().values()]
    delta_attention = torch.stack([delta[n] for n in attention], dim=1).flatten(2)  # (P, L*4, d*d)
    dot = sum((g_a[n].double() * g_b[n].double()).flatten(1).sum(1) for n in g_a)
    norm_a, norm_b = _sq_norms(g_a).sqrt(), _sq_norms(g_b).sqrt()
    return PairResult(
        delta_attention=delta_attention,
        delta_norm=_sq_norms(delta).sqrt(),
        delta_norm_attention=delta_attention.double().square().sum((1, 2)).sqrt(),
        step_norm_a=eta * norm_a,
        step_norm_b=eta * norm_b,
        cos_ab=dot / (norm_a * norm_b),
    )
