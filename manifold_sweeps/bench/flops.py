"""FLOPs of one training step, counted from the shapes.

Counted: every matrix multiply, at 2 FLOPs per multiply-add: the Q, K, V and O projections, the
attention scores (q k^T) and the weighted sum of values (full T x T per head: a causal mask hides
half of it, but attention kernels at T = 16..32 compute whole tiles), the MLP if any, and the
classifier head. The backward pass counts twice the forward (a gradient for the input and one for
the weight of every multiply; the first layer's input gradient is needed too, as the embeddings
train). Not counted: embedding lookups, LayerNorm, softmax, residual adds, the loss and the
optimizer update: elementwise work, bandwidth-bound and small next to the multiplies.

`packed=True` counts what the packed model executes: its last layer computes the query, the
attention row and the output projection (and MLP) of the readout position alone, since no other
position of that layer reaches the loss (keys and values still cover every position), and it
folds the LayerNorm shifts. `packed=False` counts what the textbook implementation executes: every
position of every layer, no folds.
"""

from __future__ import annotations

from ..model.transformer import ModelShape


def forward_flops(shape: ModelShape, batch_size: int, packed: bool = True) -> int:
    d, T, B = shape.d_model, shape.seq_len, batch_size
    total = 0
    for layer in range(shape.n_layers):
        last = layer == shape.n_layers - 1
        rows_kv = B * T  # keys and values: every position
        rows_q = B if (packed and last) else B * T  # queries, attention rows, output and MLP
        total += 2 * rows_kv * d * d * 2  # K and V projections
        total += 2 * rows_q * d * d * 2  # Q and O projections
        total += 2 * rows_q * T * d * 2  # scores and weighted values, all heads (H * hs = d)
        total += 2 * rows_q * d * (shape.mlp_ratio * d) * 2  # MLP in and out (0 when attention-only)
        if packed:
            total += 2 * d * d * 3 + 2 * d * (shape.mlp_ratio * d)  # LayerNorm shifts folded into W_Q, W_K, W_V, W_in
    total += 2 * B * d * shape.n_classes  # head, readout position only
    return total


def training_step_flops(shape: ModelShape, batch_size: int, packed: bool = True) -> int:
    """Forward + backward (twice the forward) of one step of one run."""
    return 3 * forward_flops(shape, batch_size, packed)
