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
    commutator_overhead_pct          100 x 41 x measure_s / (20,000 x step time): an upper bound,
                                     since earlier measurements build their basis from fewer snapshots
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
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ..commutator.probe import CommutatorProbe, measurement_steps
from ..config.schema import register_configs
from ..model.transformer import ModelShape, Transformer
from ..paths import CONF_DIR
from ..rundir.commutators import COMMUTATORS_FILE, DELTAS_FILE, INDEX_FILE, META_FILE
from ..training.loop import snapshot_steps, train


def _compose(*overrides: str):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _train_wall_s(cfg_overrides: tuple[str, ...], steps: int, run_dir: Path) -> float:
    cfg = _compose(*cfg_overrides, f"train.steps={steps}", "commutator.every=0")
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


def _files_mb(cfg, run_dir: Path) -> float:
    """Bytes of the commutator files of a full run, from the real writers (deltas file preallocated)."""
    steps = measurement_steps(int(cfg.train.steps), int(cfg.commutator.every))
    records = pd.read_parquet(run_dir / COMMUTATORS_FILE)  # one measurement's rows, from _measure_s
    one = records[records.step == records.step.iloc[0]]
    pd.concat([one.assign(step=s) for s in steps]).to_parquet(run_dir / "full.parquet", index=False)
    index_bytes = 128 + len(steps) * 2 * 8  # .npy header + (step, sample) int64 per median row
    total = sum((run_dir / name).stat().st_size for name in (DELTAS_FILE, META_FILE, "full.parquet")) + index_bytes
    assert (run_dir / INDEX_FILE).exists()
    return total / 2**20


def run(quick: bool = False) -> dict:
    preset = ("experiment=smoke", "commutator.every=10") if quick else ("experiment=paper",)
    common = (*preset, "train.device=cpu", "train.progress_every_s=1e9", "train.checkpoint_every=1000000")
    n = 5 if quick else 100
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wall_n = _train_wall_s(common, n, tmp / "n")
        wall_2n = _train_wall_s(common, 2 * n, tmp / "2n")
        step_s = max(wall_2n - wall_n, 1e-9) / n

        cfg = _compose(*common)
        full = len(snapshot_steps(int(cfg.train.steps), int(cfg.train.snapshot_every)))
        measure_first_s = _measure_s(cfg, tmp / "first", 2, repeats=1)
        measure_s = _measure_s(cfg, tmp / "full", full, repeats=2)
        n_measurements = len(measurement_steps(int(cfg.train.steps), int(cfg.commutator.every)))
        overhead = 100 * n_measurements * measure_s / (int(cfg.train.steps) * step_s)
        return {
            "commutator_preset": preset[0].split("=")[1],
            "commutator_train_step_ms": round(1000 * step_s, 2),
            "commutator_measure_s": round(measure_s, 3),
            "commutator_measure_first_s": round(measure_first_s, 3),
            "commutator_measurements_per_run": n_measurements,
            "commutator_overhead_pct": round(overhead, 2),
            "commutator_files_mb": round(_files_mb(cfg, tmp / "full"), 2),
        }
