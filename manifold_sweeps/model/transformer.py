"""Pre-LN causal transformer (attention-only or with MLPs) for the marker task.

Every parameter carries a leading "run" dimension P: one process can train P independent runs
with stacked weights (P = 1 for a plain run). Runs never mix: every op is batched over P, so run p's
output and gradients depend on run p's weights and data alone.

Conventions (x is a row vector, as in the transformer-circuits papers):
    q = x @ W_Q + b_Q,  k = x @ W_K + b_K,  v = x @ W_V + b_V,  out = heads @ W_O + b_O
W_Q, W_K, W_V, W_O of layer l, run p are the d x d matrices `model.blocks[l].attn.W_Q[p]` etc.;
the columns of W_Q, W_K, W_V (and the rows of W_O) are grouped head by head. The LayerNorm in
front of a projection keeps its own weight and bias; the forward pass folds them into the
projection (LayerNorm.folded), which computes the same function faster and leaves W_Q etc. as
they are.
Initialisation follows PyTorch's defaults, as the paper's code used them: projections and biases
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), embeddings N(0, 1), LayerNorm 1 and 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

MATRICES = ("W_Q", "W_K", "W_V", "W_O")


@dataclass(frozen=True)
class ModelShape:
    vocab_size: int
    seq_len: int
    n_classes: int
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 128
    mlp_ratio: int = 0  # 0: attention-only
    bias: bool = True

    @classmethod
    def from_config(cls, cfg) -> "ModelShape":
        return cls(
            vocab_size=int(cfg.task.vocab_size),
            seq_len=int(cfg.task.seq_len),
            n_classes=int(cfg.task.modulus),
            n_layers=int(cfg.model.n_layers),
            n_heads=int(cfg.model.n_heads),
            d_model=int(cfg.model.d_model),
            mlp_ratio=int(cfg.model.mlp_ratio),
            bias=bool(cfg.model.bias),
        )


def _uniform_(t: torch.Tensor, fan_in: int, gen: torch.Generator) -> None:
    bound = 1.0 / math.sqrt(fan_in)
    t.copy_(torch.rand(t.shape, generator=gen) * (2 * bound) - bound)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """(P, N, d_in) @ (P, d_in, d_out) [+ (P, d_out) or (P, 1, d_out)] -> (P, N, d_out)."""
    out = torch.bmm(x, w)
    # The bias added in place afterwards, not by baddbmm: on the CPU baddbmm first copies the
    # broadcast bias into its output, a slower pass than this add. Forward + backward CPU time per
    # step (1 thread, 12 interleaved rounds): paper 1.03x, 20-run pack 1.02x, reference_code 1.02x.
    # bmm's backward does not need its output, so the in-place add is safe for autograd.
    return out if b is None else out.add_(b if b.dim() == 3 else b.unsqueeze(1))


# glibc serves allocations above 32 MiB (its largest mmap threshold, see training/allocator.py)
# with fresh pages every time.
_FRESH_PAGES_BYTES = 32 << 20


def _fuse_qkv(x: torch.Tensor) -> bool:
    """Whether to compute q, k and v as one projection (Attention._fused_qkv).

    Fused, the paper preset's forward + backward takes 10.5 -> 10.0 ms (2 threads). On the CPU a
    fused (P, B*T, 3d) output above 32 MiB (a 20-run pack) would be fresh pages every step, 2,400
    page faults and 6% slower than three separate projections; those stay below it.
    """
    return x.device.type != "cpu" or 3 * x.numel() * x.element_size() <= _FRESH_PAGES_BYTES


def normalize(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last dimension without an affine (eps 1e-5, as nn.LayerNorm)."""
    d = x.shape[-1]
    # Through a unit affine: PyTorch's CPU kernel vectorises only when given a weight and a bias
    # (forward 268 -> 138 us, forward + backward 575 -> 449 us on 2048 x 128 floats, 1 thread).
    return F.layer_norm(x, (d,), x.new_ones(d), x.new_zeros(d))


class LayerNorm(nn.Module):
    def __init__(self, n_runs: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_runs, d))
        self.bias = nn.Parameter(torch.zeros(n_runs, d))

    def init_run_(self, p: int, gen: torch.Generator) -> None:
        self.weight[p].fill_(1.0)
        self.bias[p].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (P, N, d)
        return torch.addcmul(self.bias.unsqueeze(1), normalize(x), self.weight.unsqueeze(1))

    def folded(self, w: torch.Tensor, b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight and bias of `LN(x) @ w + b` as one projection of the normalised x.

        (x_hat * g + beta) @ w + b = x_hat @ (g[:, None] * w) + (beta @ w + b). The per-run affine
        then costs d x d_out work instead of passes over every position (a full LayerNorm with
        per-run affine, forward and backward, took 2.5x the plain normalisation: 1.46 vs 0.57 ms at
        P=1 on the 2-core development CPU; 39 vs 13 ms at P=20).
        w: (P, d, d_out), b: (P, d_out) or None -> (P, d, d_out), (P, 1, d_out).
        """
        w_folded = self.weight.unsqueeze(2) * w  # (P, d, d_out)
        b_folded = torch.bmm(self.bias.unsqueeze(1), w)  # (P, 1, d_out)
        return w_folded, b_folded if b is None else b_folded + b.unsqueeze(1)


class Attention(nn.Module):
    def __init__(self, n_runs: int, d: int, n_heads: int, bias: bool):
        super().__init__()
        self.n_heads = n_heads
        for name in MATRICES:
            setattr(self, name, nn.Parameter(torch.empty(n_runs, d, d)))
            setattr(self, "b" + name[1:], nn.Parameter(torch.zeros(n_runs, d)) if bias else None)

    def init_run_(self, p: int, gen: torch.Generator) -> None:
        for name in MATRICES:
            w = getattr(self, name)
            _uniform_(w[p], w.shape[1], gen)
            b = getattr(self, "b" + name[1:])
            if b is not None:
                _uniform_(b[p], w.shape[1], gen)

    def forward(self, x: torch.Tensor, ln: LayerNorm, batch: int, readout_only: bool = False,
                readout_attention: bool = False):
        """Attention on ln(x), with ln's affine folded into the projections. x: (P, B*T, d).

        Returns (out, attn). out is (P, B*T, d), or (P, B, d) for the readout position alone when
        readout_only: the last layer's other positions never reach the loss, so their queries are not
        computed (keys and values still cover every position). attn is the readout row's attention
        (P, B, H, T) when readout_attention is asked for, else None.
        """
        P, BT, d = x.shape
        B, T, H = batch, BT // batch, self.n_heads
        hs = d // H
        x_hat = normalize(x)
        x_q = x_hat.view(P, B, T, d)[:, :, -1, :] if readout_only else x_hat  # (P, B, d) or (P, B*T, d)
        if _fuse_qkv(x):
            q, k, v = self._fused_qkv(x_hat, x_q, ln)
        else:
            q, k, v = (_linear(x_in, *ln.folded(w, b)) for x_in, w, b in
                       ((x_q, self.W_Q, self.b_Q), (x_hat, self.W_K, self.b_K), (x_hat, self.W_V, self.b_V)))
        k = k.reshape(P * B, T, H, hs).transpose(1, 2)  # (P*B, H, T, hs)
        v = v.reshape(P * B, T, H, hs).transpose(1, 2)  # (P*B, H, T, hs)
        Tq = 1 if readout_only else T
        q = q.reshape(P * B, Tq, H, hs).transpose(1, 2)  # (P*B, H, Tq, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=not readout_only)  # (P*B, H, Tq, hs)
        y = y.transpose(1, 2).reshape(P, B * Tq, d)
        out = _linear(y, self.W_O, self.b_O)  # (P, B*Tq, d)
        attn = None
        if readout_attention:
            q_last = q[:, :, -1:, :]  # (P*B, H, 1, hs); the readout row sees every position
            scores = (q_last @ k.transpose(-2, -1)).squeeze(2) / math.sqrt(hs)  # (P*B, H, T)
            attn = scores.softmax(dim=-1).view(P, B, H, T)
        return out, attn

    def _fused_qkv(self, x_hat: torch.Tensor, x_q: torch.Tensor, ln: LayerNorm):
        """q, k, v from one fold of [W_Q | W_K | W_V] and one (d, 3d) product (two when the queries
        are the readout rows alone): fewer and larger operations than three of each."""
        d = x_hat.shape[-1]
        biases = None if self.b_Q is None else torch.cat([self.b_Q, self.b_K, self.b_V], dim=1)
        w, b = ln.folded(torch.cat([self.W_Q, self.W_K, self.W_V], dim=2), biases)  # (P, d, 3d), (P, 1, 3d)
        if x_q is x_hat:
            return _linear(x_hat, w, b).split(d, dim=2)
        k, v = _linear(x_hat, w[:, :, d:], b[:, :, d:]).split(d, dim=2)
        return _linear(x_q, w[:, :, :d], b[:, :, :d]), k, v


class MLP(nn.Module):
    def __init__(self, n_runs: int, d: int, ratio: int):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(n_runs, d, ratio * d))
        self.b_in = nn.Parameter(torch.zeros(n_runs, ratio * d))
        self.W_out = nn.Parameter(torch.empty(n_runs, ratio * d, d))
        self.b_out = nn.Parameter(torch.zeros(n_runs, d))

    def init_run_(self, p: int, gen: torch.Generator) -> None:
        for w, b in ((self.W_in, self.b_in), (self.W_out, self.b_out)):
            _uniform_(w[p], w.shape[1], gen)
            _uniform_(b[p], w.shape[1], gen)

    def forward(self, x: torch.Tensor, ln: LayerNorm) -> torch.Tensor:
        """MLP on ln(x), with ln's affine folded into W_in. x: (P, N, d)."""
        return _linear(F.gelu(_linear(normalize(x), *ln.folded(self.W_in, self.b_in))), self.W_out, self.b_out)


class Block(nn.Module):
    def __init__(self, n_runs: int, shape: ModelShape):
        super().__init__()
        d = shape.d_model
        self.ln_attn = LayerNorm(n_runs, d)
        self.attn = Attention(n_runs, d, shape.n_heads, shape.bias)
        self.ln_mlp = LayerNorm(n_runs, d) if shape.mlp_ratio else None
        self.mlp = MLP(n_runs, d, shape.mlp_ratio) if shape.mlp_ratio else None

    def init_run_(self, p: int, gen: torch.Generator) -> None:
        for module in (self.ln_attn, self.attn, self.ln_mlp, self.mlp):
            if module is not None:
                module.init_run_(p, gen)

    def forward(self, x: torch.Tensor, batch: int, readout_only: bool = False, readout_attention: bool = False):
        """x: (P, B*T, d) residual stream -> (P, B*T, d), or (P, B, d) when readout_only."""
        a, attn = self.attn(x, self.ln_attn, batch, readout_only, readout_attention)
        if readout_only:
            P, BT, d = x.shape
            x = x.view(P, batch, BT // batch, d)[:, :, -1, :]  # (P, B, d)
        x = x + a
        if self.mlp is not None:
            x = x + self.mlp(x, self.ln_mlp)
        return x, attn


class Transformer(nn.Module):
    def __init__(self, shape: ModelShape, n_runs: int = 1):
        super().__init__()
        self.shape, self.n_runs = shape, n_runs
        d = shape.d_model
        self.tok_emb = nn.Parameter(torch.empty(n_runs, shape.vocab_size, d))
        self.pos_emb = nn.Parameter(torch.empty(n_runs, shape.seq_len, d))
        self.blocks = nn.ModuleList(Block(n_runs, shape) for _ in range(shape.n_layers))
        self.ln_f = LayerNorm(n_runs, d)
        self.W_head = nn.Parameter(torch.empty(n_runs, d, shape.n_classes))
        self.b_head = nn.Parameter(torch.zeros(n_runs, shape.n_classes))

    @torch.no_grad()
    def init_run_(self, p: int, seed: int) -> None:
        """(Re)initialise run p from its own seed, drawing on the CPU so every device agrees."""
        gen = torch.Generator().manual_seed(seed)
        for emb in (self.tok_emb, self.pos_emb):
            emb[p].copy_(torch.randn(emb.shape[1:], generator=gen))
        for block in self.blocks:
            block.init_run_(p, gen)
        self.ln_f.init_run_(p, gen)
        _uniform_(self.W_head[p], self.shape.d_model, gen)
        _uniform_(self.b_head[p], self.shape.d_model, gen)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (P, B, T) -> residual stream (P, B*T, d)."""
        P, B, T = tokens.shape
        V = self.shape.vocab_size
        # One lookup in the stacked table: run p's token t is row p*V + t.
        flat = (tokens + torch.arange(P, device=tokens.device).view(P, 1, 1) * V).view(P, B * T)
        x = F.embedding(flat, self.tok_emb.view(P * V, -1))  # (P, B*T, d)
        return (x.view(P, B, T, -1) + self.pos_emb[:, None, :T, :]).view(P, B * T, -1)

    def forward(self, tokens: torch.Tensor, readout_attention: bool = False):
        """tokens (P, B, T) -> logits at the readout position (P, B, C).

        With readout_attention, also returns the readout row's attention per layer, a list of
        (P, B, H, T) tensors.
        """
        B = tokens.shape[1]
        x = self.embed(tokens)
        attentions = []
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            x, attn = block(x, B, readout_only=last, readout_attention=readout_attention)
            attentions.append(attn)
        logits = _linear(self.ln_f(x), self.W_head, self.b_head)  # (P, B, C)
        return (logits, attentions) if readout_attention else logits

    def forward_from(self, x: torch.Tensor, layer: int, batch: int) -> torch.Tensor:
        """Run blocks layer.. on a residual stream x (P, B*T, d) taken after block layer-1."""
        for i in range(layer, len(self.blocks)):
            x, _ = self.blocks[i](x, batch, readout_only=i == len(self.blocks) - 1)
        return _linear(self.ln_f(x), self.W_head, self.b_head)

    def attention_matrices(self) -> dict[tuple[int, str], nn.Parameter]:
        """{(layer, "W_Q"|"W_K"|"W_V"|"W_O"): parameter of shape (P, d, d)}, in a fixed order."""
        return {(l, name): getattr(b.attn, name) for l, b in enumerate(self.blocks) for name in MATRICES}

    def run_state(self, p: int) -> dict[str, torch.Tensor]:
        """Run p's weights alone, as CPU tensors without the run dimension."""
        return {k: v[p].detach().cpu().clone() for k, v in self.state_dict().items()}

    @torch.no_grad()
    def load_run_state(self, p: int, state: dict[str, torch.Tensor]) -> None:
        for k, v in self.state_dict().items():
            v[p].copy_(state[k])


def readout_entropy(attn: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of attention rows (..., T), 0 log 0 taken as 0."""
    return -torch.special.xlogy(attn, attn).sum(dim=-1)
