"""The SGD commutator files of a run (written only when commutator.every > 0).

    commutators.parquet          one row per measurement step x sample (columns: COLUMNS below),
                                 projections onto the causal execution basis; rewritten atomically
                                 after every measurement
    commutators.json             the measurement settings (every, samples, eta, precision, basis_k,
                                 random_trials, save_deltas, seed) and the delta file's layout
    commutator_deltas.npy        float32 (n_planned, n_layers, 4, d, d): delta on W_Q, W_K, W_V, W_O
                                 of the saved samples, laid out like trajectory.npy; allocated at
                                 full size, only the first len(index) rows are valid
    commutator_deltas_index.npy  int64 (n_valid, 2): the (step, sample) of each valid row

The delta files exist unless commutator.save_deltas is none. As with the trajectory, a row is
flushed before the index is atomically replaced, and a resumed run drops every record from the
resume step on and writes it again identically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path, preallocate_npy, write_bytes, write_rows, write_text
from .trajectory import _npy_bytes

COMMUTATORS_FILE = "commutators.parquet"
META_FILE = "commutators.json"
DELTAS_FILE = "commutator_deltas.npy"
INDEX_FILE = "commutator_deltas_index.npy"
COLUMNS = {
    "step": "int64",  # weights after this many updates
    "sample": "int64",  # 0..samples-1
    "m_a": "int64",  # markers of batch A
    "m_b": "int64",
    "delta_norm": "float64",  # ||delta|| over every parameter that gets a gradient
    "delta_norm_attention": "float64",  # ||delta|| over W_Q, W_K, W_V, W_O of every layer
    "attention_share": "float64",  # ||delta_attention||^2 / ||delta||^2
    "step_norm_a": "float64",  # ||eta g_A||
    "step_norm_b": "float64",
    "defect": "float64",  # D = ||delta|| / (||eta g_A|| ||eta g_B||)
    "cos_ab": "float64",  # cosine between g_A and g_B
    "basis_dim": "int64",  # directions in the causal execution basis (sum over blocks)
    "rho_exec": "float64",  # ||P delta|| / ||delta|| on the attention coordinates
    "outside_energy": "float64",  # 1 - rho_exec^2
    "rho_random": "float64",  # mean over random block-matched subspaces
    "exec_random_ratio": "float64",  # rho_exec / rho_random
}


def _frame(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(COLUMNS)


def load_commutators(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The run's commutator records (empty with the right columns when there are none)."""
    path = Path(run_dir) / COMMUTATORS_FILE
    return _frame(pd.read_parquet(path) if path.exists() else [])


class CommutatorLog:
    def __init__(self, run_dir: str | os.PathLike, keep_before_step: int = 0):
        """Opens the run's records, keeping those of steps before keep_before_step (resume)."""
        self.path = Path(run_dir) / COMMUTATORS_FILE
        old = load_commutators(run_dir)
        self.frame = old[old["step"] < keep_before_step].reset_index(drop=True)

    def add(self, rows: list[dict]) -> None:
        self.frame = pd.concat([self.frame, _frame(rows)], ignore_index=True)

    def flush(self) -> None:
        with atomic_path(self.path) as tmp:
            self.frame.to_parquet(tmp, index=False)


def write_meta(run_dir: str | os.PathLike, meta: dict) -> None:
    write_text(Path(run_dir) / META_FILE, json.dumps(meta, indent=2) + "\n")


def read_meta(run_dir: str | os.PathLike) -> dict | None:
    try:
        return json.loads((Path(run_dir) / META_FILE).read_text())
    except (OSError, ValueError):
        return None


class DeltaWriter:
    """Appends saved deltas (n_layers, 4, d, d) with their (step, sample) to the preallocated file."""

    def __init__(self, run_dir: str | os.PathLike, n_planned: int, n_layers: int, d_model: int, keep_before_step: int = 0):
        self.dir = Path(run_dir)
        shape = (n_planned, n_layers, 4, d_model, d_model)
        path = self.dir / DELTAS_FILE
        index = self.dir / INDEX_FILE
        if path.exists() and index.exists() and np.load(path, mmap_mode="r").shape == shape:
            self.index = [tuple(r) for r in np.load(index).tolist() if r[0] < keep_before_step]
        else:
            preallocate_npy(path, shape)
            self.index = []
        self.data = np.load(path, mmap_mode="r")  # written by write_rows
        self._write_index()

    def append(self, step: int, samples: list[int], deltas: np.ndarray) -> None:
        """deltas (len(samples), n_layers, 4, d, d): the saved samples of one measurement."""
        i, j = len(self.index), len(samples)
        if i + j > len(self.data):
            raise ValueError(f"{self.dir / DELTAS_FILE} holds {len(self.data)} rows; no room for step {step}")
        write_rows(self.data, deltas, i)
        self.index += [(int(step), int(s)) for s in samples]
        self._write_index()

    def _write_index(self) -> None:
        rows = np.asarray(self.index, dtype=np.int64).reshape(-1, 2)
        write_bytes(self.dir / INDEX_FILE, _npy_bytes(rows))


def load_deltas(run_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(index (n, 2) int64 of (step, sample), deltas (n, n_layers, 4, d, d) float32 memory-mapped)."""
    run_dir = Path(run_dir)
    index = np.load(run_dir / INDEX_FILE)
    return index, np.load(run_dir / DELTAS_FILE, mmap_mode="r")[: len(index)]
