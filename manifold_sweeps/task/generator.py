"""Vectorised batch generation for the marker task (layout in `layout.py`).

Every draw goes through an explicit `torch.Generator`, so a stream seeded the same way yields the
same batches; nothing touches the global RNG. Batches are built on the generator's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .layout import TokenLayout


@dataclass
class Batch:
    tokens: torch.Tensor  # (B, T) long
    labels: torch.Tensor  # (B,) long
    marker_positions: torch.Tensor  # (B, m) long, sorted
    values: torch.Tensor  # (B, m) long
    m: int


def sample_marker_positions(
    layout: TokenLayout, m: int, batch_size: int, per_batch: bool, generator: torch.Generator
) -> torch.Tensor:
    """Uniform over all placements of m markers in 1..L-2 with consecutive markers >= 2 apart.

    Choosing m sorted distinct slots out of n - (m - 1) and shifting the i-th by i is a bijection
    onto the valid placements, so uniform random subsets give uniform placements.
    """
    n_slots = layout.body_length - 2
    free = n_slots - (m - 1)
    rows = 1 if per_batch else batch_size
    keys = torch.rand(rows, free, generator=generator, device=generator.device)
    chosen = keys.topk(m, dim=1).indices.sort(dim=1).values  # (rows, m)
    shift = torch.arange(m, device=generator.device)
    positions = 1 + chosen + shift  # (rows, m)
    return positions.expand(batch_size, m) if per_batch else positions


def label_of(values: torch.Tensor, op: str, modulus: int) -> torch.Tensor:
    if op == "add":
        return values.sum(dim=1) % modulus
    # Reduce after every factor: the raw product overflows int64 for large m and C.
    out = torch.ones_like(values[:, 0])
    for i in range(values.shape[1]):
        out = (out * values[:, i]) % modulus
    return out


def sample_batch(
    layout: TokenLayout, m: int, batch_size: int, generator: torch.Generator, per_batch_positions: bool = False
) -> Batch:
    device = generator.device
    if not 1 <= m <= layout.max_markers:
        raise ValueError(f"m={m} does not fit: allowed 1..{layout.max_markers} for this layout")
    positions = sample_marker_positions(layout, m, batch_size, per_batch_positions, generator)
    values = torch.randint(layout.min_value, layout.modulus, (batch_size, m), generator=generator, device=device)
    tokens = torch.randint(
        layout.first_distractor, layout.vocab_size, (batch_size, layout.seq_len), generator=generator, device=device
    )
    if layout.marker_scheme == "indexed":
        markers = (layout.first_marker + torch.arange(m, device=device)).expand(batch_size, m)
    else:
        markers = torch.full((batch_size, m), layout.first_marker, device=device, dtype=torch.long)
    tokens.scatter_(1, positions, markers)
    tokens.scatter_(1, positions + 1, values)
    if layout.query_token is not None:
        tokens[:, -1] = layout.query_token
    labels = label_of(values, layout.op, layout.modulus)
    return Batch(tokens=tokens, labels=labels, marker_positions=positions.contiguous(), values=values, m=m)



def stack_batches(batches: list[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch per run of a pack -> tokens (P, B, T), labels (P, B)."""
    return torch.stack([b.tokens for b in batches]), torch.stack([b.labels for b in batches])

# Token classes, for probes and tests: derived from token ids alone because the classes are disjoint.
VALUE, MARKER, QUERY, DISTRACTOR = 0, 1, 2, 3


def token_classes(layout: TokenLayout, tokens: torch.Tensor) -> torch.Tensor:
    classes = torch.full_like(tokens, DISTRACTOR)
    classes[tokens < layout.modulus] = VALUE
    is_marker = (tokens >= layout.first_marker) & (tokens < layout.first_marker + layout.n_marker_tokens)
    classes[is_marker] = MARKER
    if layout.query_token is not None:
        classes[tokens == layout.query_token] = QUERY
    return classes
