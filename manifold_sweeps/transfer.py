"""Host values onto the training device without waiting for it."""

from __future__ import annotations

import torch


def from_host(values, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`torch.tensor(values, dtype=dtype, device=device)` that never stalls a CUDA stream.

    A copy from pageable host memory to a GPU waits until every kernel queued before it has run:
    a host sync, once per step where the training loop needs such a tensor. From pinned memory the
    copy is queued like a kernel; PyTorch's pinned-memory allocator keeps the buffer until the copy
    is done, so the temporary may go out of scope at once.
    """
    t = torch.tensor(values, dtype=dtype)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
