"""The weight trajectory of one run: W_Q, W_K, W_V, W_O of every layer at every snapshot step.

Files (numpy's .npy format, readable and memory-mappable with numpy alone):

    trajectory.npy        float32 (n_planned, n_layers, 4, d, d); matrices in the order W_Q, W_K,
                          W_V, W_O, each in the `x @ W` convention (rows index the input)
    trajectory_steps.npy  int64 (n_valid,): the training step of each valid row, ascending
    trajectory.json       {"matrices", "n_layers", "d_model", "n_planned", "planned_steps"}

trajectory.npy is allocated at its final size when the run starts (every planned snapshot); only
its first n_valid rows hold data. A snapshot's row is written and synced to disk before
trajectory_steps.npy is atomically replaced, so the steps file never claims a row that is not fully
written. Biases are not saved.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from .atomic import preallocate_npy, write_bytes, write_rows, write_text

TRAJECTORY_FILE = "trajectory.npy"
STEPS_FILE = "trajectory_steps.npy"
META_FILE = "trajectory.json"
MATRICES = ("W_Q", "W_K", "W_V", "W_O")


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


class TrajectoryWriter:
    def __init__(self, run_dir: str | os.PathLike, planned_steps: list[int], n_layers: int, d_model: int):
        self.dir = Path(run_dir)
        self.planned_steps = [int(s) for s in planned_steps]
        shape = (len(self.planned_steps), n_layers, len(MATRICES), d_model, d_model)
        path = self.dir / TRAJECTORY_FILE
        meta = {
            "matrices": list(MATRICES),
            "n_layers": n_layers,
            "d_model": d_model,
            "n_planned": len(self.planned_steps),
            "planned_steps": self.planned_steps,
        }
        existing = _read_meta(self.dir)
        if existing == meta and path.exists():
            self.steps = list(np.load(self.dir / STEPS_FILE)) if (self.dir / STEPS_FILE).exists() else []
        else:
            preallocate_npy(path, shape)
            self.steps = []
            self._write_steps()
            write_text(self.dir / META_FILE, json.dumps(meta) + "\n")
        self.data = np.load(path, mmap_mode="r")  # read by the commutator basis; written by write_rows

    @property
    def count(self) -> int:
        return len(self.steps)

    def append(self, step: int, matrices: np.ndarray) -> None:
        """matrices: (n_layers, 4, d, d) float32 for `step`."""
        i = len(self.steps)
        if i >= len(self.planned_steps) or self.planned_steps[i] != step:
            raise ValueError(f"snapshot at step {step} was not planned next (row {i})")
        write_rows(self.data, np.asarray(matrices)[None], i)
        self.steps.append(int(step))
        self._write_steps()

    def truncate(self, count: int) -> None:
        """Forget rows from `count` on (a resumed run rewrites them identically)."""
        self.steps = self.steps[:count]
        self._write_steps()

    def _write_steps(self) -> None:
        write_bytes(self.dir / STEPS_FILE, _npy_bytes(np.asarray(self.steps, dtype=np.int64)))


def _read_meta(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / META_FILE).read_text())
    except (OSError, ValueError):
        return None


class Trajectory:
    """Read-only view of a saved trajectory; matrices come back memory-mapped."""

    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir)
        meta = _read_meta(self.dir)
        if meta is None:
            raise FileNotFoundError(f"{self.dir / META_FILE} is missing or unreadable")
        self.matrices: list[str] = meta["matrices"]
        self.n_layers: int = meta["n_layers"]
        self.d_model: int = meta["d_model"]
        self.steps: np.ndarray = np.load(self.dir / STEPS_FILE)
        self._data = np.load(self.dir / TRAJECTORY_FILE, mmap_mode="r")
        expected = (meta["n_planned"], self.n_layers, len(self.matrices), self.d_model, self.d_model)
        if self._data.shape != expected or len(self.steps) > expected[0]:
            raise ValueError(f"{self.dir / TRAJECTORY_FILE} has shape {self._data.shape}, expected {expected}")

    def __len__(self) -> int:
        return len(self.steps)

    def matrix(self, layer: int, name: str) -> np.ndarray:
        """Snapshots of one matrix, (n_snapshots, d, d) float32, memory-mapped (not copied)."""
        return self._data[: len(self.steps), layer, self.matrices.index(name)]

    def keys(self) -> list[tuple[int, str]]:
        return [(layer, name) for layer in range(self.n_layers) for name in self.matrices]


def load_trajectory(run_dir: str | os.PathLike) -> Trajectory:
    return Trajectory(run_dir)
