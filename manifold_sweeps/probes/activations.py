"""The model side of probing: rebuild a checkpointed model, read the residual stream after a block,
and run the rest of the network from a (possibly edited) residual stream.

The probe works on one run at a time (run dimension P = 1). Activations cover every position, so an
edit at the probe layer reaches the readout through attention, not only when the readout position
itself is edited (the paper's code recomputed the logits from the last position alone).
"""

from __future__ import annotations

import torch

from ..model.transformer import ModelShape, Transformer


def model_from_checkpoint(payload: dict, device) -> Transformer:
    """A one-run Transformer with a model checkpoint's weights (see rundir/model_checkpoints.py)."""
    model = Transformer(ModelShape(**payload["shape"]), n_runs=1)
    model.load_run_state(0, payload["model"])
    return model.to(device).eval()


@torch.no_grad()
def residual_stream(model: Transformer, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """tokens (B, T) -> the residual stream after block `layer` at every position, (B*T, d)."""
    B = tokens.shape[0]
    x = model.embed(tokens.unsqueeze(0))  # (1, B*T, d)
    for block in model.blocks[: layer + 1]:
        x, _ = block(x, B)  # every position: the next block's keys and values need them all
    return x[0]


@torch.no_grad()
def logits_from(model: Transformer, x: torch.Tensor, layer: int, batch: int) -> torch.Tensor:
    """Readout logits (B, C) from a residual stream x (B*T, d) taken after block `layer`."""
    out = model.forward_from(x.unsqueeze(0), layer + 1, batch)[0]  # (B, C), or (B*T, C) after the last block
    if out.shape[0] != batch:
        # No block is left to pick the readout position: the head saw every position.
        out = out.view(batch, -1, out.shape[-1])[:, -1]  # (B, C)
    return out
