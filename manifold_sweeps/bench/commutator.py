"""Cost of measuring SGD commutators at the defaults on the `paper` preset (issue 4's targets:
at most 15% more wall time on CPU, at most 30 MB of saved deltas per run).

A full paper run (20,000 steps, 41 measurements) takes hours on a small CPU, so the figures come
from its parts, each timed on the real code:
    commutator_train_step_ms         marginal wall time of one training step of the real loop
                                     (paper preset, measurement off): (wall(2N steps) - wall(N)) / N
    commutator_measure_s             one measurement at the defaults (9 batch pairs, basis_k 3,
                                     10 random trials) against a full 201-snapshot trajectory, the
                                     largest basis of the run (best of 2)
    commutator_measure_first_s       the same against 2 snapshots (early in a run)
    commutator_measure_mid_s         the same against half the trajectory (mid-run)
    commutator_overhead_pct          100 x (sum over the run's 41 measurements of their cost) /
                                     (20,000 x step time). A measurement at step s builds its basis
                                     from the s / snapshot_every + 1 snapshots so far; its cost is the
                                     quadratic in that count through the three timed points (the
                                     basis's Gram matrix grows with its square, the rest linearly)
    commutator_overhead_upper_pct    the same with every measurement costing measure_s: a bound
    commutator_files_mb              commutator_deltas.npy, its index, commutators.parquet and
                                     commutators.json of a full paper run (save_deltas=median), as the
                                     real writers lay them out
quick=True runs the same on the tiny `smoke` preset in a few seconds (a check that it works).
Timings on a shared machine are noisy; compare figures from the same machine and load.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..commutator.probe import CommutatorProbe, measurement_steps, saved_rows_per_step
from ..model.transformer import ModelShape, Transformer
from ..rundir.commutators import (
    COMMUTATORS_FILE, DELTAS_FILE, INDEX_FILE, META_FILE, CommutatorLog, DeltaWriter, load_commutators, load_deltas,
    read_meta, write_meta,
)
from ..task.layout import _name
from ..training.loop import snapshot_steps, train
from .runs import compose_config


def _train_wall_s(cfg_overrides: tuple[str, ...], steps: int, run_dir: Path) -> float:
    cfg = compose_config(*cfg_overrides, f"train.steps={steps}", "commutator.every=0")
    start = time.perf_counter()
    train(cfg, run_dir)
    return time.perf_counter() - start


def _measure_s(cfg, run_dir: Path, n_snapshots: int, repeats: int) -> float:
    """Best wall time of one measurement of a fresh model against n random snapshots."""
    shape = ModelShape.from_config(cfg)
    model = Transformer(shape, n_runs=1)
    model.init_run_(0, 0)
    gen = np.random.default_rng(0)
    d = shape.d_model
    snapshots = gen.standard_normal((n_snapshots, shape.n_layers, 4, d, d), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        probe = CommutatorProbe([cfg], [run_dir], torch.device("cpu"))  # fresh files: a new run's
        start = time.perf_counter()
        probe.measure(int(cfg.train.steps), model, [snapshots])
        best = min(best, time.perf_counter() - start)
    return best


def _files_mb(cfg, measured: Path, run_dir: Path) -> float:
    """Size of the commutator files of a full run, written by the real writers: the records and
    saved delta of the measurement in `measured`, repeated at every measurement step."""
    steps = measurement_steps(int(cfg.train.steps), int(cfg.commutator.every))
    rows = load_commutators(measured)
    index, deltas = load_deltas(measured)
    per_step = saved_rows_per_step(_name(cfg.commutator.save_deltas), int(cfg.commutator.samples))
    run_dir.mkdir()
    records = CommutatorLog(run_dir)
    writer = DeltaWriter(run_dir, len(steps) * per_step, int(cfg.model.n_layers), int(cfg.model.d_model))
    for step in steps:
        records.add(rows.assign(step=step).to_dict("records"))
        writer.append(step, index[:per_step, 1].tolist(), deltas[:per_step])
    records.flush()
    write_meta(run_dir, read_meta(measured))
    files = (COMMUTATORS_FILE, META_FILE, DELTAS_FILE, INDEX_FILE)
    return sum((run_dir / name).stat().st_size for name in files) / 2**20


def run(quick: bool = False) -> dict:
    preset = ("experiment=smoke", "commutator.every=10") if quick else ("experiment=paper",)
    common = (*preset, "train.device=cpu", "train.progress_every_s=1e9", "train.checkpoint_every=1000000")
    n = 20 if quick else 100
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wall_n = _train_wall_s(common, n, tmp / "n")
        wall_2n = _train_wall_s(common, 2 * n, tmp / "2n")
        step_s = max(wall_2n - wall_n, 1e-9) / n

        cfg = compose_config(*common)
        full = len(snapshot_steps(int(cfg.train.steps), int(cfg.train.snapshot_every)))  # the most a basis sees
        measure_s = _measure_s(cfg, tmp / "full", full, repeats=2)  # the first repeat also warms up
        measure_first_s = _measure_s(cfg, tmp / "first", 2, repeats=1)
        mid = max(full // 2, 3)
        measure_mid_s = _measure_s(cfg, tmp / "mid", mid, repeats=1)
        steps = measurement_steps(int(cfg.train.steps), int(cfg.commutator.every))
        cost = np.polynomial.Polynomial.fit([2, mid, full], [measure_first_s, measure_mid_s, measure_s], deg=2)
        planned = snapshot_steps(int(cfg.train.steps), int(cfg.train.snapshot_every))
        n_snapshots = [sum(1 for t in planned if t <= s) for s in steps]  # taken before each measurement
        measured_s = float(sum(max(cost(n), 0.0) for n in n_snapshots))
        train_s = int(cfg.train.steps) * step_s
        return {
            "commutator_preset": preset[0].split("=")[1],
            "commutator_train_step_ms": round(1000 * step_s, 2),
            "commutator_measure_s": round(measure_s, 3),
            "commutator_measure_first_s": round(measure_first_s, 3),
            "commutator_measure_mid_s": round(measure_mid_s, 3),
            "commutator_measurements_per_run": len(steps),
            "commutator_overhead_pct": round(100 * measured_s / train_s, 2),
            "commutator_overhead_upper_pct": round(100 * len(steps) * measure_s / train_s, 2),
            "commutator_files_mb": round(_files_mb(cfg, tmp / "full", tmp / "files"), 2),
        }
