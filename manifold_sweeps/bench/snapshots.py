"""Cost of weight snapshots to the training loop, for a pack of the `paper` preset's shape.

A snapshot of a P-run pack is written into every run's trajectory files (training/snapshots.py,
training/background_writer.py).
Timed in turn, on the training device, into fresh trajectory files in a temporary directory:
- synchronous: the loop copies the weights to the host and writes every run's row itself, as it did
  before the writer thread: the loop stands still for all of it;
- threaded: the loop takes a copy on the device and hands it to the writer thread, as it does now:
  the loop's stall is the copy; the write itself, timed until `wait()` returns, goes on beside it.
While the thread writes, the loop's Python thread keeps issuing small tensor operations, counted
against the same operations with the writer idle: how much the writer slows a loop that is not
stalled (the GIL, and on a small CPU the cores it shares).

Figures: snapshot_runs, snapshot_synchronous_stall_ms, snapshot_threaded_stall_ms (medians),
snapshot_write_ms_per_run (threaded, write time / P), snapshot_loop_speed_while_writing (median
ratio of small operations per second while writing and while idle).
"""

from __future__ import annotations

import functools
import tempfile
import threading
import time
from pathlib import Path

import torch

from ..rundir.trajectory import TrajectoryWriter
from ..training.allocator import keep_freed_memory
from ..training.background_writer import BackgroundWriter
from ..training.snapshots import write_snapshot
from .runs import bench_device, compose_config
from .timing import interleaved, median, median_ratio

FULL = dict(runs=120, rounds=7)
QUICK = dict(runs=4, rounds=1)


def run(quick: bool = False) -> dict:
    plan = QUICK if quick else FULL
    P, rounds = plan["runs"], plan["rounds"]
    keep_freed_memory()  # as the training process does: the copies reuse pages instead of faulting in new ones
    cfg = compose_config("experiment=paper")
    L, d = int(cfg.model.n_layers), int(cfg.model.d_model)
    device = bench_device()
    planned = list(range(0, int(cfg.train.steps) + 1, int(cfg.train.snapshot_every)))
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(P, d, d, generator=gen).to(device) for _ in range(L * 4)]  # as Transformer.attention_matrices
    probe = torch.zeros(64, 64, device=device)
    figures: dict = {"snapshot_runs": P}

    with tempfile.TemporaryDirectory(prefix="manifold-bench-") as tmp:
        trajectories = {
            way: [TrajectoryWriter(Path(tmp) / way / f"run{p}", planned, L, d) for p in range(P)]
            for way in ("synchronous", "threaded")
        }
        rows = {"synchronous": 0, "threaded": 0}
        writer = BackgroundWriter()
        write_s, busy_rates = [], []

        def snapshot() -> torch.Tensor:
            return torch.stack(weights, dim=1).view(P, L, 4, d, d)

        def synchronous() -> float:
            step = planned[rows["synchronous"]]
            t0 = time.perf_counter()
            host = snapshot().cpu().numpy()
            for p, trajectory in enumerate(trajectories["synchronous"]):
                trajectory.append(step, host[p])
            rows["synchronous"] += 1
            return (time.perf_counter() - t0) * 1e3

        def threaded() -> float:
            step = planned[rows["threaded"]]
            t0 = time.perf_counter()
            writer.submit(functools.partial(write_snapshot, step, snapshot(), list(enumerate(trajectories["threaded"]))))
            stall = time.perf_counter() - t0
            written = threading.Event()
            waiter = threading.Thread(target=lambda: (writer.wait(), written.set()))
            waiter.start()
            busy_rates.append(_small_ops_per_s(probe, until=written.is_set))
            waiter.join()
            writer.wait()  # raises here if the writer failed
            write_s.append(time.perf_counter() - t0)
            rows["threaded"] += 1
            return stall * 1e3

        idle_rates: list[float] = []

        def idle() -> float:
            start = time.perf_counter()
            idle_rates.append(_small_ops_per_s(probe, until=lambda: time.perf_counter() - start > median(write_s or [0.05])))
            return idle_rates[-1]

        try:
            times = interleaved({"synchronous": synchronous, "threaded": threaded, "idle": idle}, rounds, "snapshots ")
        finally:
            writer.close()
    figures.update({
        "snapshot_synchronous_stall_ms": round(median(times["synchronous"]), 1),
        "snapshot_threaded_stall_ms": round(median(times["threaded"]), 1),
        "snapshot_write_ms_per_run": round(median(write_s) * 1e3 / P, 2),
        "snapshot_loop_speed_while_writing": round(median_ratio(busy_rates, idle_rates), 2),
        "snapshot_device": str(device),
    })
    return figures


def _small_ops_per_s(t: torch.Tensor, until) -> float:
    """Small tensor operations per second, issued until `until()` holds (at least one batch)."""
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(20):
            t.add(1.0)
        n += 20
        if until():
            break
    if t.is_cuda:
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)
