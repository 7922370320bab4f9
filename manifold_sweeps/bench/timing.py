"""Timing helpers shared by the benchmarks: interleaved rounds, a per-step clock, the matmul peak.

The development machines are shared, so their speed drifts while a benchmark runs. Candidates are
therefore timed in turn (A B A B ...) and summarised by medians; ratios are taken pair by pair
(the A and B of one round), never between figures measured minutes apart.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


class StepClock:
    """Records the time of every call.

    The training loop polls its `should_stop` once per step, so a clock passed as should_stop times
    every step of the real loop (snapshots and all) without touching it; it never asks to stop.
    On a GPU the host runs ahead of the kernels it queues, so each call also records a CUDA event
    in the stream (no sync): the rate is then taken between the events, i.e. when the GPU reached
    those points, which counts the queued work the host clock would miss and leaves the loop as
    unsynchronised as it is in a real run.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.times: list[float] = []
        self.events: list[torch.cuda.Event] | None = [] if torch.device(device).type == "cuda" else None

    def __call__(self) -> bool:
        self.times.append(time.perf_counter())
        if self.events is not None:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.events.append(event)
        return False

    def steps_per_s(self, skip: int) -> float:
        """Steps per second after the first `skip` steps (warm-up: first calls allocate and dispatch)."""
        steps = len(self.times) - 1 - skip
        if steps < 1:
            raise ValueError(f"the clock saw {len(self.times) - 1} steps; need more than skip={skip}")
        if self.events is not None:
            self.events[-1].synchronize()
            return steps / (self.events[skip].elapsed_time(self.events[-1]) / 1e3)
        return steps / (self.times[-1] - self.times[skip])


def interleaved(tasks: dict[str, Callable[[], float]], rounds: int, label: str = "") -> dict[str, list[float]]:
    """Call every task once per round, in turn; returns each task's figures, one per round."""
    figures: dict[str, list[float]] = {name: [] for name in tasks}
    for r in range(rounds):
        for name, task in tasks.items():
            figures[name].append(task())
            print(f"  {label}round {r + 1}/{rounds} {name}: {figures[name][-1]:.4g}", flush=True)
    return figures


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median of the round-by-round ratios."""
    return median([a / b for a, b in zip(numerators, denominators)])


def matmul_peak_gflops(quick: bool = False, device: str | torch.device = "cpu",
                       sizes: tuple[int, ...] | None = None) -> tuple[float, int]:
    """The fp32 matrix-multiply rate `device` reaches, in GFLOP/s, and the size that reached it.

    Square torch.mm into a preallocated output (with torch's default threads on the CPU), at a few
    sizes; per size the median of 5 timed trials of ~0.2 s each (after a warm-up), and the best size
    wins. This is what BLAS (cuBLAS on a GPU, fp32 as torch's default leaves it: no TF32) delivers
    here, not the chip's theoretical peak. A GPU needs larger products to fill it.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    sizes = sizes or ((128, 256) if quick else (1024, 2048, 4096, 8192) if cuda else (256, 512, 1024, 2048))
    trial_s, trials = (0.02, 3) if quick else (0.2, 5)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    best = (0.0, 0)
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        a, b = (torch.randn(n, n, generator=gen).to(device) for _ in range(2))
        out = torch.empty(n, n, device=device)
        torch.mm(a, b, out=out)
        sync()
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        reps = max(1, int(trial_s / max(time.perf_counter() - t0, 1e-6)))
        rates = []
        for _ in range(trials):
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b, out=out)
            sync()
            rates.append(2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
        best = max(best, (median(rates), n))
    return best
