"""The kernels that execute a training step's counted FLOPs, replayed alone: the step's own ceiling.

The matmul peak is measured on large square products; a step's products are 2048 x 128 x 384 and
smaller, and its attention runs on 32 x 32 tiles, where BLAS and the attention kernel reach less.
To tell that apart from the overhead around them (elementwise work, autograd, Python, thread
hand-offs), one step of one run is recorded through the model's own code (forward and backward,
as the training loop calls them) and every operation that carries counted FLOPs is kept with its
inputs: the matrix multiplies torch's FLOP counter has formulas for, and the attention kernels.
Replaying only those, back to back, gives the steps/s the step would reach if it were nothing but
them, and so the highest roofline fraction these kernels allow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from omegaconf import DictConfig
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ..model.transformer import ModelShape, Transformer
from ..task.generator import sample_batches
from ..task.layout import TokenLayout
from ..training.loop import forward_backward_eager

aten = torch.ops.aten
# The CPU flash-attention kernels have no FLOP formula in torch's counter but execute the
# attention's counted FLOPs (bench/flops.py counts them).
FLOP_OPS = set(flop_registry) | {aten._scaled_dot_product_flash_attention_for_cpu,
                                 aten._scaled_dot_product_flash_attention_for_cpu_backward}


@dataclass
class RecordedOp:
    func: Callable
    args: tuple
    kwargs: dict

    def __call__(self) -> Any:
        return self.func(*self.args, **self.kwargs)


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[RecordedOp] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in FLOP_OPS:
            self.ops.append(RecordedOp(func, args, kwargs))
        return func(*args, **kwargs)


def record_step(cfg: DictConfig, device: str | torch.device = "cpu") -> list[RecordedOp]:
    """The FLOP-carrying operations of one training step of one run of `cfg`, with their inputs."""
    shape = ModelShape.from_config(cfg)
    model = Transformer(shape, n_runs=1)
    model.init_run_(0, int(cfg.seed))
    model.to(device)
    layout = TokenLayout.from_config(cfg.task)
    gen = torch.Generator(device=device).manual_seed(int(cfg.seed))
    # m = 1 fits every layout; the number of markers changes no shape.
    tokens, labels = sample_batches([layout], [1], int(cfg.train.batch_size), [gen], [False])
    recorder = _Recorder()
    with recorder:
        forward_backward_eager(model, tokens, labels)
    return recorder.ops


def replay(ops: list[RecordedOp]) -> None:
    for op in ops:
        op()


def replays_per_s(ops: list[RecordedOp], min_s: float, device: str | torch.device = "cpu") -> float:
    """Replays of all `ops` per second over at least `min_s` seconds, after one warm-up replay."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    replay(ops)
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        replay(ops)
        n += 1
        if n % 5 == 0:
            sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= min_s:
                return n / elapsed
