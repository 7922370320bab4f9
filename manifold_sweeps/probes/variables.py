"""Task variables at every position of a batch, for correlating SAE latents with the task.

    m              markers in the example (the same at each of its positions)
    is_marker      1 at marker tokens, else 0
    is_value       1 at value tokens
    is_distractor  1 at distractor tokens
    is_readout     1 at the readout position T-1 (the query token, or whatever is last)
    value_token    the value at value positions; undefined (masked out) elsewhere
    running_sum    the task's operation over the values seen so far, mod C, up to and including this
                   position: the partial label (0 before the first value; for op=mul a running
                   product, 1 before the first value)
    label          the example's label (the same at each of its positions)

Token classes come from the token ids alone (`task.generator.token_classes`), so the run's held-out
evaluation sets, which keep tokens and labels only, carry every variable.
"""

from __future__ import annotations

import torch

from ..task.generator import DISTRACTOR, MARKER, VALUE, token_classes
from ..task.layout import TokenLayout

VARIABLES = ("m", "is_marker", "is_value", "is_distractor", "is_readout", "value_token", "running_sum", "label")


def task_variables(layout: TokenLayout, tokens: torch.Tensor, labels: torch.Tensor):
    """tokens (B, T), labels (B,) -> (values, defined), each (B*T, len(VARIABLES)): float64 values and
    a bool mask of the positions where each variable is defined."""
    B, T = tokens.shape
    classes = token_classes(layout, tokens)  # (B, T)
    is_value = classes == VALUE
    value = torch.where(is_value, tokens, torch.zeros_like(tokens))
    running = torch.empty_like(tokens)
    acc = torch.full((B,), 0 if layout.op == "add" else 1, dtype=tokens.dtype, device=tokens.device)
    for t in range(T):  # over positions (T is small), vectorised over examples
        if layout.op == "add":
            acc = (acc + value[:, t]) % layout.modulus
        else:
            acc = torch.where(is_value[:, t], (acc * value[:, t]) % layout.modulus, acc)
        running[:, t] = acc
    m = (classes == MARKER).sum(dim=1, keepdim=True).expand(B, T)
    is_readout = torch.zeros_like(is_value)
    is_readout[:, -1] = True
    columns = {
        "m": m,
        "is_marker": classes == MARKER,
        "is_value": is_value,
        "is_distractor": classes == DISTRACTOR,
        "is_readout": is_readout,
        "value_token": value,
        "running_sum": running,
        "label": labels.view(B, 1).expand(B, T),
    }
    values = torch.stack([columns[name].double() for name in VARIABLES], dim=-1).view(B * T, -1)  # (B*T, K)
    defined = torch.ones_like(values, dtype=torch.bool)
    defined[:, VARIABLES.index("value_token")] = is_value.reshape(-1)
    return values, defined
