"""Named, independent random streams derived from a run's seed.

Each consumer (initialisation, training data, the m schedule, evaluation sets, commutator
batches...) gets its own generator, so turning one consumer on or off never shifts another's draws.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for `stream` of a run with `seed`, stable across machines and versions."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(stream.encode())]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(seed: int, stream: str, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))
