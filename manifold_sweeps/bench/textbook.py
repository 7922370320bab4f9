"""The same model, task and training written the textbook way: the baseline of the speed benchmark.

What a careful first implementation looks like (nanoGPT style, and the paper's code's data
pipeline): one fused qkv `nn.Linear` per block, `F.scaled_dot_product_attention` with a causal mask
at every position of every layer, batches built example by example with Python's `random`, and a
plain loop with torch.optim. It computes the same function as `manifold_sweeps.model.transformer`
(tests/test_bench.py loads one into the other and compares logits) and draws batches from the same
distribution, but none of the speed work of the packed model and its loop.
"""

from __future__ import annotations

import random
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import DictConfig

from ..task.curriculum import Curriculum
from ..task.layout import TokenLayout, _name


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int, mlp_ratio: int, bias: bool):
        super().__init__()
        self.n_heads = n_heads
        self.ln_1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=bias)
        self.proj = nn.Linear(d, d, bias=bias)
        self.ln_2 = nn.LayerNorm(d) if mlp_ratio else None
        self.mlp = (
            nn.Sequential(nn.Linear(d, mlp_ratio * d), nn.GELU(), nn.Linear(mlp_ratio * d, d)) if mlp_ratio else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        hs = d // self.n_heads
        q, k, v = self.qkv(self.ln_1(x)).split(d, dim=2)
        q = q.view(B, T, self.n_heads, hs).transpose(1, 2)  # (B, H, T, hs)
        k = k.view(B, T, self.n_heads, hs).transpose(1, 2)  # (B, H, T, hs)
        v = v.view(B, T, self.n_heads, hs).transpose(1, 2)  # (B, H, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hs)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, d))
        if self.mlp is not None:
            x = x + self.mlp(self.ln_2(x))
        return x


class TextbookTransformer(nn.Module):
    def __init__(self, cfg: DictConfig):
        super().__init__()
        d = int(cfg.model.d_model)
        self.tok_emb = nn.Embedding(int(cfg.task.vocab_size), d)
        self.pos_emb = nn.Embedding(int(cfg.task.seq_len), d)
        self.blocks = nn.ModuleList(
            Block(d, int(cfg.model.n_heads), int(cfg.model.mlp_ratio), bool(cfg.model.bias))
            for _ in range(int(cfg.model.n_layers))
        )
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, int(cfg.task.modulus))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> logits at the readout position (B, C)."""
        T = tokens.shape[1]
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(T, device=tokens.device))  # (B, T, d)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x)[:, -1, :])


def _marker_positions(layout: TokenLayout, m: int, rng: random.Random) -> list[int]:
    """m sorted positions in 1..L-2, at least 2 apart (same distribution as the task generator)."""
    free = layout.body_length - 2 - (m - 1)
    return [1 + slot + i for i, slot in enumerate(sorted(rng.sample(range(free), m)))]


def make_batch(layout: TokenLayout, m: int, batch_size: int, rng: random.Random, per_batch_positions: bool):
    """One batch built example by example, as the paper's code does: (tokens (B, T), labels (B,))."""
    shared = _marker_positions(layout, m, rng) if per_batch_positions else None
    sequences, labels = [], []
    for _ in range(batch_size):
        positions = shared or _marker_positions(layout, m, rng)
        seq = [rng.randrange(layout.first_distractor, layout.vocab_size) for _ in range(layout.seq_len)]
        values = [rng.randrange(layout.min_value, layout.modulus) for _ in range(m)]
        label = 0 if layout.op == "add" else 1
        for i, (pos, value) in enumerate(zip(positions, values)):
            seq[pos] = layout.first_marker + (i if layout.marker_scheme == "indexed" else 0)
            seq[pos + 1] = value
            label = (label + value) % layout.modulus if layout.op == "add" else (label * value) % layout.modulus
        if layout.query_token is not None:
            seq[-1] = layout.query_token
        sequences.append(seq)
        labels.append(label)
    return torch.tensor(sequences), torch.tensor(labels)


def make_optimizer(model: nn.Module, opt_cfg) -> torch.optim.Optimizer:
    if _name(opt_cfg.name) == "sgd":
        return torch.optim.SGD(model.parameters(), lr=opt_cfg.lr, momentum=opt_cfg.momentum,
                               weight_decay=opt_cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=opt_cfg.lr, betas=tuple(opt_cfg.betas), eps=opt_cfg.eps,
                             weight_decay=opt_cfg.weight_decay)


def train(cfg: DictConfig, steps: int, on_step: Callable[[], None] = lambda: None, device: str = "cpu") -> float:
    """A plain training loop of `steps` steps; returns the last loss.

    on_step is called at the start of every step and once after the last (the benchmark's clock).
    """
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = TextbookTransformer(cfg).to(device)
    opt = make_optimizer(model, cfg.optimizer)
    layout = TokenLayout.from_config(cfg.task)
    curriculum = Curriculum(cfg.curriculum, cfg.task.m, steps)
    per_batch = _name(cfg.task.positions) == "per_batch"
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        on_step()
        x, y = make_batch(layout, rng.choice(curriculum.distribution(step)), int(cfg.train.batch_size), rng, per_batch)
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    on_step()
    return loss.item()
