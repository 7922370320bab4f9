"""Vectorised batch generation for the marker task (layout in `layout.py`).

Every draw goes through an explicit `torch.Generator`, so a stream seeded the same way yields the
same batches; nothing touches the global RNG. Batches are built on the generator's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..transfer import from_host
from .layout import TokenLayout


@dataclass
class Batch:
    tokens: torch.Tensor  # (B, T) long
    labels: torch.Tensor  # (B,) long
    marker_positions: torch.Tensor  # (B, m) long, sorted
    values: torch.Tensor  # (B, m) long
    m: int


def _draws(layout: TokenLayout, m: int, batch_size: int, per_batch_positions: bool, generator: torch.Generator):
    """One batch's random draws, in its stream's fixed order: marker-slot keys (rows, free), values
    (B, m), distractors (B, T). Every batch of a run, alone or in a pack, consumes its stream so."""
    if not 1 <= m <= layout.max_markers:
        raise ValueError(f"m={m} does not fit: allowed 1..{layout.max_markers} for this layout")
    device = generator.device
    rows = 1 if per_batch_positions else batch_size
    free = layout.body_length - 2 - (m - 1)
    keys = torch.rand(rows, free, generator=generator, device=device)
    values = torch.randint(layout.min_value, layout.modulus, (batch_size, m), generator=generator, device=device)
    tokens = torch.randint(
        layout.first_distractor, layout.vocab_size, (batch_size, layout.seq_len), generator=generator, device=device
    )
    return keys, values, tokens


def _assemble(layout: TokenLayout, m: int, keys: torch.Tensor, values: torch.Tensor, tokens: torch.Tensor):
    """G batches of one layout and m from their draws at once: keys (G, rows, free), values (G, B, m),
    tokens (G, B, T), written in place -> marker positions (G, B, m), labels (G, B).

    Marker positions are uniform over all placements in 1..L-2 with consecutive markers >= 2 apart:
    choosing m sorted distinct slots out of n - (m - 1) (the m largest keys) and shifting the i-th by
    i is a bijection onto the valid placements. The slots come from a stable sort, which picks the
    same ones for a row whatever else is sorted with it, ties included (topk's tie order is not
    promised): a run's batches are the same alone and in a pack.
    """
    G, B = values.shape[:2]
    device = tokens.device
    chosen = keys.argsort(dim=2, descending=True, stable=True)[:, :, :m].sort(dim=2).values  # (G, rows, m)
    positions = (1 + chosen + torch.arange(m, device=device)).expand(G, B, m)
    if layout.marker_scheme == "indexed":
        markers = (layout.first_marker + torch.arange(m, device=device)).expand(G, B, m)
    else:
        markers = torch.full((G, B, m), layout.first_marker, device=device, dtype=torch.long)
    tokens.scatter_(2, positions, markers)
    tokens.scatter_(2, positions + 1, values)
    if layout.query_token is not None:
        tokens[:, :, -1] = layout.query_token
    labels = label_of(values.reshape(G * B, m), layout.op, layout.modulus).view(G, B)
    return positions, labels


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
    """One batch with m markers, drawn from `generator` (on its device)."""
    keys, values, tokens = _draws(layout, m, batch_size, per_batch_positions, generator)
    positions, labels = _assemble(layout, m, keys[None], values[None], tokens[None])
    return Batch(tokens=tokens, labels=labels[0], marker_positions=positions[0].contiguous(), values=values, m=m)


def sample_batches(
    layouts: list[TokenLayout], ms: list[int], batch_size: int, generators: list[torch.Generator],
    per_batch_positions: list[bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch per run of a pack -> tokens (P, B, T), labels (P, B): run p's batch is exactly
    `sample_batch(layouts[p], ms[p], batch_size, generators[p], per_batch_positions[p])`.

    The draws stay per run (each run's own generator), but everything after them is done once for
    all runs that share a layout, m and placement mode: on a GPU a 120-run pack of one m launches
    about 380 operations per batch instead of 2,000. All layouts must share seq_len.
    """
    draws = [_draws(*request) for request in zip(layouts, ms, [batch_size] * len(ms), per_batch_positions, generators)]
    groups: dict[tuple, list[int]] = {}
    for p, key in enumerate(zip(layouts, ms, per_batch_positions)):
        groups.setdefault(key, []).append(p)

    def assembled(layout: TokenLayout, m: int, members: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values, tokens = (_stacked([draws[p][i] for p in members]) for i in range(3))
        return tokens, _assemble(layout, m, keys, values, tokens)[1]

    if len(groups) == 1:  # one kind of batch (always for a single run): the runs are already in order
        return assembled(layouts[0], ms[0], list(range(len(draws))))
    P, device = len(draws), draws[0][2].device
    tokens = torch.empty((P, *draws[0][2].shape), dtype=torch.long, device=device)
    labels = torch.empty((P, batch_size), dtype=torch.long, device=device)
    for (layout, m, _), members in groups.items():
        group_tokens, group_labels = assembled(layout, m, members)
        index = from_host(members, torch.long, device)  # no host sync per step on a GPU
        tokens.index_copy_(0, index, group_tokens)
        labels.index_copy_(0, index, group_labels)
    return tokens, labels


def _stacked(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


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
