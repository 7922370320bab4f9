"""Measuring SGD commutators during training: when, on which batches, and what gets recorded.

At every measurement step s (0, every, 2*every, ... up to train.steps) the probe takes the weights
after s updates and, for each of `samples` independent pairs of batches (A, B) drawn from the
curriculum's distribution at s, computes the commutator of one plain gradient step on A and one
on B (measure.py), and projects it onto the causal execution basis, built from the run's
snapshots so far (basis.py, projection.py). Files: manifold_sweeps/rundir/commutators.py.

Randomness: everything the measurement at step s draws comes from the run's own streams
"commutator/step=<s>" (batches, on the training device), ".../m" (marker counts, CPU) and
".../random_basis" (the baseline, CPU). Training never draws from them, so a trajectory is
byte-identical with measurement on or off; and as the draws depend on (seed, s) alone, a resumed
run measures exactly as an uninterrupted one with no generator state in its checkpoint.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig

from ..model.transformer import MATRICES, Transformer
from ..rundir.commutators import CommutatorLog, DeltaWriter, write_meta
from ..seeding import generator
from ..task.curriculum import Curriculum
from ..task.generator import sample_batches
from ..task.layout import TokenLayout, _name
from .basis import trajectory_basis
from .measure import PairResult, measure_pair
from .projection import projection_stats

log = logging.getLogger(__name__)


def measurement_steps(total: int, every: int) -> list[int]:
    """Step 0 and every `every` steps up to total; none when every is 0."""
    return list(range(0, total + 1, every)) if every else []


def saved_rows_per_step(save_deltas: str, samples: int) -> int:
    return {"median": 1, "all": samples, "none": 0}[save_deltas]


@dataclass
class _RunProbe:
    seed: int
    layout: TokenLayout
    curriculum: Curriculum
    per_batch_positions: bool
    records: CommutatorLog
    deltas: DeltaWriter | None


class CommutatorProbe:
    """Measures the commutators of every run of a pack (they share all commutator.* keys)."""

    def __init__(self, cfgs: list[DictConfig], run_dirs: list[str | os.PathLike], device, start_step: int = 0):
        com, cfg0 = cfgs[0].commutator, cfgs[0]
        self.every, self.samples, self.eta = int(com.every), int(com.samples), float(com.eta)
        self.dtype = torch.float64 if _name(com.precision) == "float64" else torch.float32
        self.basis_k, self.trials, self.save = int(com.basis_k), int(com.random_trials), _name(com.save_deltas)
        self.batch_size, self.device = int(cfg0.train.batch_size), device
        self.n_layers, self.d_model = int(cfg0.model.n_layers), int(cfg0.model.d_model)
        total = int(cfg0.train.steps)
        n_rows = len(measurement_steps(total, self.every)) * saved_rows_per_step(self.save, self.samples)
        self.runs = []
        for cfg, run_dir in zip(cfgs, run_dirs):
            write_meta(run_dir, {
                "every": self.every, "samples": self.samples, "eta": self.eta, "precision": _name(com.precision),
                "basis_k": self.basis_k, "random_trials": self.trials, "save_deltas": self.save, "seed": int(cfg.seed),
                "n_layers": self.n_layers, "d_model": self.d_model, "matrices": list(MATRICES),
                "n_planned_deltas": n_rows,
            })
            deltas = DeltaWriter(run_dir, n_rows, self.n_layers, self.d_model, start_step) if n_rows else None
            self.runs.append(_RunProbe(
                seed=int(cfg.seed),
                layout=TokenLayout.from_config(cfg.task),
                curriculum=Curriculum(cfg.curriculum, cfg.task.m, total),
                per_batch_positions=_name(cfg.task.positions) == "per_batch",
                records=CommutatorLog(Path(run_dir), keep_before_step=start_step),
                deltas=deltas,
            ))

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def measure(self, step: int, model: Transformer, snapshots: list[np.ndarray | torch.Tensor | None],
                write: Callable[[Callable[[], None]], None] = lambda files: files()) -> None:
        """Measure at the model's current weights (after `step` updates) and record every run's samples.

        snapshots[p]: run p's trajectory so far, (n, n_layers, 4, d, d): an array (a memory-mapped
        view is fine: it is read one matrix at a time) or a tensor on the training device; None for a
        run that has stopped (not recorded). `write` is handed one callable that writes every run's
        files (records and deltas): the training loop gives it to its background writer.
        """
        gens = [(generator(r.seed, f"commutator/step={step}", self.device), generator(r.seed, f"commutator/step={step}/m"))
                for r in self.runs]
        ms, results = [], []
        for _ in range(self.samples):
            # A for every run, then B: each run's streams are its own, so each still draws A, then B.
            m_a, batch_a = self._draw(step, gens)
            m_b, batch_b = self._draw(step, gens)
            ms.append(list(zip(m_a, m_b)))
            results.append(measure_pair(model, batch_a, batch_b, self.eta, self.dtype))
        deltas = torch.stack([r.delta_attention for r in results])  # (S, P, L*4, d*d), on the device
        columns = [_per_run(r) for r in results]  # [sample][run]
        defects, files = [], []
        for p, run in enumerate(self.runs):
            if snapshots[p] is not None:
                rows, saved = self._record(run, step, snapshots[p], [m[p] for m in ms], [c[p] for c in columns], deltas[:, p])
                defects += [row["defect"] for row in rows]
                files.append((run, rows, saved))
        if files:
            write(functools.partial(self._write_files, step, files))
        if defects:
            log.info("commutators at step %d: median D %.4g over %d samples", step, float(np.median(defects)), len(defects))

    def _record(self, run: _RunProbe, step: int, snapshots: np.ndarray | torch.Tensor, ms: list[tuple[int, int]],
                results: list[dict], deltas: torch.Tensor) -> tuple[list[dict], tuple[list[int], torch.Tensor] | None]:
        """Project one run's samples onto its causal basis; deltas (S, L*4, d*d).

        Returns its records and the deltas it keeps: (samples, (len(samples), L*4, d*d) on the device),
        or None when it keeps none.
        """
        blocks = [snapshots[:, layer, j] for layer in range(self.n_layers) for j in range(len(MATRICES))]
        # The basis on the training device; the random bases drawn on the CPU, from the stream the
        # aggregation's `_final` rows use too (commutator/tables.py), and moved there.
        basis, dims = trajectory_basis(blocks, self.basis_k, self.device)
        random_gen = generator(run.seed, f"commutator/step={step}/random_basis")
        stats = {name: value.cpu() for name, value in
                 projection_stats(deltas, basis, dims, self.trials, random_gen).items()}
        rows = [
            {"step": step, "sample": s, "m_a": ms[s][0], "m_b": ms[s][1], **results[s], "basis_dim": int(dims.sum()),
             **{name: float(value[s]) for name, value in stats.items()}}
            for s in range(self.samples)
        ]
        if run.deltas is None:
            return rows, None
        keep = self._saved_samples([row["defect"] for row in rows])
        return rows, (keep, deltas[keep].float())

    def _write_files(self, step: int, files: list[tuple[_RunProbe, list[dict], tuple[list[int], torch.Tensor] | None]]) -> None:
        d = self.d_model
        for run, rows, saved in files:
            run.records.add(rows)
            run.records.flush()
            if saved is not None:
                keep, deltas = saved
                run.deltas.append(step, keep, deltas.cpu().numpy().reshape(len(keep), self.n_layers, len(MATRICES), d, d))

    def _draw(self, step: int, gens: list[tuple[torch.Generator, torch.Generator]]):
        """Every run's m from the curriculum's distribution at `step` and its batch: (ms, (tokens, labels))."""
        ms = [run.curriculum.draw_m(step, m_gen) for run, (_, m_gen) in zip(self.runs, gens)]
        return ms, sample_batches([r.layout for r in self.runs], ms, self.batch_size, [g for g, _ in gens],
                                  [r.per_batch_positions for r in self.runs])

    def _saved_samples(self, defect: list[float]) -> list[int]:
        if self.save == "all":
            return list(range(len(defect)))
        order = np.argsort(defect, kind="stable")
        return [int(order[(len(defect) - 1) // 2])]  # the lower median for an even count


def _per_run(res: PairResult) -> list[dict[str, float]]:
    """Every run's scalar quantities of one sample, as record columns: read from the device at once,
    not one synchronising read per number (6 per run and sample)."""
    values = torch.stack([res.delta_norm, res.delta_norm_attention, res.step_norm_a, res.step_norm_b, res.defect,
                          res.cos_ab]).cpu().tolist()
    return [
        {
            "delta_norm": delta_norm,
            "delta_norm_attention": attention,
            "attention_share": attention**2 / delta_norm**2 if delta_norm > 0 else float("nan"),
            "step_norm_a": step_a,
            "step_norm_b": step_b,
            "defect": defect,
            "cos_ab": cos_ab,
        }
        for delta_norm, attention, step_a, step_b, defect, cos_ab in zip(*values)
    ]
