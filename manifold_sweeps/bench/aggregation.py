"""Benchmark: aggregating a synthetic sweep of 120 runs x 201 snapshots x 2 layers x 4 matrices of 128 x 128.

The sweep is written in the real run-directory format (config, Hydra choices, status, metrics,
trajectory) into a temporary folder: 20 seeds x 6 values of task.m, each trajectory W_0 plus a
drift along 5 fixed directions (r90 = 4, as the paper reports) plus isotropic noise (12.6 GB in all). Before timing, the
trajectories are flushed to disk and dropped from the page cache (posix_fadvise), so the
aggregation reads them cold, as it would a sweep written hours earlier. The aggregation runs as
`python -m manifold_sweeps.aggregate` in a child process (with its default 2 worker processes).

Figures: aggregate_<N>_runs_wall_s (cold, nothing cached); aggregate_<N>_runs_cpu_s (user + system
CPU seconds of the aggregation and its workers: less sensitive than wall time to a busy machine);
aggregate_<N>_runs_peak_rss_gib (the
peak of the summed RSS of the child and its workers, sampled every 0.1 s: conservative, as pages
shared between them count once per process); aggregate_<N>_runs_max_process_rss_gib (ru_maxrss,
the largest single process); reaggregate_cached_wall_s (the same again, every run from the
per-run cache); sweep_gib (trajectory data); write_sweep_s (making the sweep, not timed).
Targets on the 2-core development machine: under 60 s and under 2 GiB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from omegaconf import OmegaConf

from ..config.schema import Config
from ..rundir.metrics import MetricsLog
from ..rundir.status import StatusWriter
from ..training.packing import config_fingerprint
from ..rundir.trajectory import MATRICES, META_FILE, STEPS_FILE, TRAJECTORY_FILE

FULL = dict(n_seeds=20, n_conditions=6, n_snapshots=201, n_layers=2, d_model=128)
QUICK = dict(n_seeds=3, n_conditions=2, n_snapshots=21, n_layers=2, d_model=16)
SNAPSHOT_EVERY = 100
# Oscillating modes of decreasing amplitude, switched on early: variance shares 44/28/16/9/4%.
DRIFT_AMPLITUDES = np.array([1.0, 0.8, 0.6, 0.45, 0.3])
NOISE = 3e-4


def _write_config(run_dir: Path, seed: int, m: int, n_layers: int, d_model: int, steps: int) -> None:
    cfg = OmegaConf.structured(Config)
    cfg.seed, cfg.task.m, cfg.curriculum.kind = seed, m, "single"
    cfg.model.n_layers, cfg.model.d_model = n_layers, d_model
    cfg.train.steps, cfg.train.snapshot_every = steps, SNAPSHOT_EVERY
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    choices = {"task": "modadd", "model": "attention_only", "optimizer": "adamw", "curriculum": "single",
               "train": "default", "experiment": None, "hydra/launcher": "basic"}
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))


def _write_trajectory(run_dir: Path, steps: np.ndarray, n_layers: int, d_model: int,
                      noise_pool: np.ndarray, rng: np.random.Generator) -> None:
    """The files of manifold_sweeps/rundir/trajectory.py, written in bulk (the writer appends one snapshot at a time)."""
    n, dim = len(steps), d_model * d_model
    data = np.lib.format.open_memmap(run_dir / TRAJECTORY_FILE, mode="w+", dtype=np.float32,
                                     shape=(n, n_layers, len(MATRICES), d_model, d_model))
    t = (steps / steps[-1])[:, None]  # (n, 1) training fraction
    rank = len(DRIFT_AMPLITUDES)
    curves = (1 - np.exp(-t / 0.1)) * np.cos(np.pi * np.arange(1, rank + 1) * t) * DRIFT_AMPLITUDES  # (n, r)
    for layer in range(n_layers):
        for j in range(len(MATRICES)):
            w0 = rng.standard_normal(dim, dtype=np.float32) / np.sqrt(d_model)
            directions = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(dim)  # (r, D)
            drift = (curves * rng.uniform(0.8, 1.2, rank)).astype(np.float32) @ directions  # (n, D)
            offset = int(rng.integers(0, noise_pool.shape[1] - dim + 1))
            data[:, layer, j] = (w0 + drift + noise_pool[:n, offset:offset + dim]).reshape(n, d_model, d_model)
    data.flush()
    del data
    np.save(run_dir / STEPS_FILE, steps.astype(np.int64))
    meta = {"matrices": list(MATRICES), "n_layers": n_layers, "d_model": d_model, "n_planned": n,
            "planned_steps": steps.tolist()}
    (run_dir / META_FILE).write_text(json.dumps(meta) + "\n")


def write_synthetic_sweep(folder: Path, n_seeds: int, n_conditions: int, n_snapshots: int, n_layers: int,
                          d_model: int, seed: int = 0) -> list[Path]:
    """A completed sweep of n_seeds x n_conditions runs (task.m = 1..n_conditions) in the run-directory format."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n_snapshots, dtype=np.int64) * SNAPSHOT_EVERY
    dim = d_model * d_model
    # Shared noise, read at a random offset per matrix: distinct data without drawing 12 GB of normals.
    noise_pool = rng.standard_normal((n_snapshots, 2 * dim), dtype=np.float32) * np.float32(NOISE)
    run_dirs = []
    for m in range(1, n_conditions + 1):
        for s in range(n_seeds):
            run_dir = folder / f"seed={s},task.m={m}"
            _write_config(run_dir, s, m, n_layers, d_model, int(steps[-1]))
            _write_trajectory(run_dir, steps, n_layers, d_model, noise_pool, rng)
            metrics = MetricsLog(run_dir)
            for step in (0, int(steps[-1])):
                metrics.add(step, "eval_accuracy", 1 / 8 if step == 0 else 0.99, m=m)
            metrics.flush()
            StatusWriter(run_dir).update(state="completed", total_steps=int(steps[-1]), last_step=int(steps[-1]),
                                         wall_time_s=60.0,
                                         config_fingerprint=config_fingerprint(OmegaConf.load(run_dir / ".hydra" / "config.yaml")))
            run_dirs.append(run_dir)
    return run_dirs


def _drop_from_page_cache(run_dirs: list[Path]) -> None:
    """Write the trajectories to disk and evict them from the page cache: the next read is cold."""
    for run_dir in run_dirs:
        fd = os.open(run_dir / TRAJECTORY_FILE, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _tree_rss_bytes(root: int) -> int:
    """Summed resident memory of process `root` and its descendants (Linux /proc)."""
    parents, rss = {}, {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * page
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    return sum(rss.get(pid, 0) for pid in tree)


def _aggregate_in_child(sweep: Path, *args: str) -> tuple[float, float, float, float]:
    """(wall s, CPU s, peak summed RSS GiB of the process tree, largest process's ru_maxrss GiB) of one aggregation.

    The child's rusage from wait4 includes its worker processes (it waits for them).
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "manifold_sweeps.aggregate", str(sweep), *args],
                                stdout=log, stderr=subprocess.STDOUT)
        peak = 0
        while True:
            # wait4, not poll(): it reaps the child and still returns this child's own rusage.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _tree_rss_bytes(proc.pid))
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        log.seek(0)
        output = log.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"aggregation failed (exit {proc.returncode}):\n{output}")
    max_process = usage.ru_maxrss / 2**20  # KiB on Linux
    return wall, usage.ru_utime + usage.ru_stime, peak / 2**30, max_process


def run(quick: bool = False) -> dict:
    shape = QUICK if quick else FULL
    n_runs = shape["n_seeds"] * shape["n_conditions"]
    folder = Path(tempfile.mkdtemp(prefix="bench-aggregation-"))
    try:
        t0 = time.perf_counter()
        run_dirs = write_synthetic_sweep(folder / "sweep", **shape)
        _drop_from_page_cache(run_dirs)
        written_s = time.perf_counter() - t0
        sweep_bytes = sum((d / TRAJECTORY_FILE).stat().st_size for d in run_dirs)
        wall, cpu, rss, max_process = _aggregate_in_child(folder / "sweep")
        cached_wall, _, _, _ = _aggregate_in_child(folder / "sweep")
        return {
            f"aggregate_{n_runs}_runs_wall_s": round(wall, 2),
            f"aggregate_{n_runs}_runs_cpu_s": round(cpu, 2),
            f"aggregate_{n_runs}_runs_peak_rss_gib": round(rss, 3),
            f"aggregate_{n_runs}_runs_max_process_rss_gib": round(max_process, 3),
            "reaggregate_cached_wall_s": round(cached_wall, 2),
            "sweep_gib": round(sweep_bytes / 2**30, 2),
            "sweep_shape": f"{n_runs} runs x {shape['n_snapshots']} snapshots x {shape['n_layers']} layers x 4 x "
                           f"{shape['d_model']}^2",
            "write_sweep_s": round(written_s, 1),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
