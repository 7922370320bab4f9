"""The windows of a trajectory whose effective rank is reported.

    whole      every snapshot
    expanding  snapshots up to i/N of training, i = 1..N  (N = --expanding-windows): when collapse happens
    sliding    snapshots in [s, s + w] of training, s = 0, stride, 2 stride, ... while s + w <= 1

Fractions are of the run's planned training steps; a snapshot belongs to a window when its step
lies within the window's bounds (both ends included). Windows with fewer than 2 snapshots are
skipped: one snapshot has no spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SNAPSHOTS = 2
# Fractions built by repeated addition (0.1 + 0.1 + ...) miss their exact value by rounding.
_EPS = 1e-9


@dataclass(frozen=True)
class Window:
    kind: str  # whole, expanding, sliding
    start_fraction: float
    end_fraction: float
    rows: slice  # rows of the trajectory (its snapshots in step order)


def trajectory_windows(steps: np.ndarray, total_steps: int, expanding: int, width: float, stride: float) -> list[Window]:
    steps = np.asarray(steps)
    total = max(int(total_steps), 1)

    def window(kind: str, start: float, end: float) -> Window:
        first = int(np.searchsorted(steps, (start - _EPS) * total, side="left"))
        stop = int(np.searchsorted(steps, (end + _EPS) * total, side="right"))
        return Window(kind, round(start, 9), round(end, 9), slice(first, stop))

    windows = [Window("whole", 0.0, 1.0, slice(0, len(steps)))]
    windows += [window("expanding", 0.0, i / expanding) for i in range(1, expanding + 1)]
    n_sliding = int(np.floor((1 - width) / stride + _EPS)) + 1
    windows += [window("sliding", i * stride, i * stride + width) for i in range(n_sliding)]
    return [w for w in windows if w.rows.stop - w.rows.start >= MIN_SNAPSHOTS]
