"""The spectrum of a set of weight snapshots: covariance eigenvalues, effective ranks, principal directions.

Definitions (the paper's eq. 1-2, over the full spectrum; its code capped PCA at 8 components):

    snapshots W(t_1), ..., W(t_n) of one d x d matrix, flattened row-major to w_i in R^D, D = d^2
    reference "mean":          x_i = w_i - mean_j w_j      (centred, eq. 1)
    reference "displacement":  x_i = w_i - w_0             (W_t - W_0 uncentred, w_0 = the trajectory's
                                                            first snapshot; the companion paper's choice)
    Sigma = (1/n) sum_i x_i x_i^T, eigenvalues lambda_1 >= lambda_2 >= ... >= 0
    r_q                  = min{k : (lambda_1 + ... + lambda_k) / sum lambda >= q}   (eq. 2; q = 0.90 -> r90)
    participation_ratio  = (sum lambda)^2 / sum lambda^2
    pc1_fraction         = lambda_1 / sum lambda

Sigma (D x D) is never formed: its non-zero eigenvalues are those of the n x n Gram matrix
(1/n) X X^T of the rows x_i, and the 1/n cancels from every measure above, so it is dropped.

Precision: snapshots are W_0 plus a drift much smaller than W_0, so an uncentred float32 Gram that
is centred afterwards would have cancelled most of its digits. The Gram here is built in float64
from the displacements w_i - w_first (exact: float32 values subtract exactly in float64), and a
window is centred algebraically, J G J with J = I - 11^T/m on the window's sub-block, which loses
only the digits of the window's spread relative to its distance from w_first. One Gram per
trajectory therefore serves every window.
"""

from __future__ import annotations

import numpy as np

MEAN = "mean"
DISPLACEMENT = "displacement"
REFERENCES = (MEAN, DISPLACEMENT)
QUANTILES = {"r90": 0.90, "r95": 0.95, "r99": 0.99}
MEASURES = (*QUANTILES, "participation_ratio", "pc1_fraction")
# Eigenvalues below this fraction of the largest are rounding noise of a rank-deficient Gram.
RANK_TOLERANCE = 1e-10


def centre_gram(gram: np.ndarray) -> np.ndarray:
    """J G J with J = I - 11^T/m: the Gram of the rows after subtracting their mean."""
    row_mean = gram.mean(axis=1, keepdims=True)  # (m, 1)
    return gram - row_mean - row_mean.T + row_mean.mean()


class SnapshotGram:
    """The Gram matrix of one trajectory's snapshots, from which every window's spectrum follows.

    snapshots: (n, ...) array-like (a memory map is read once); each snapshot is flattened row-major.
    A window is a slice of snapshot rows; `reference` is MEAN or DISPLACEMENT (see the module docstring).
    """

    def __init__(self, snapshots: np.ndarray):
        n = len(snapshots)
        flat = np.reshape(snapshots, (n, -1))  # (n, D); a view of a memory map when each snapshot is contiguous
        first = np.array(flat[0], dtype=np.float64)  # (D,)
        self.delta = np.subtract(flat, first, dtype=np.float64)  # (n, D): w_i - w_first
        self.gram = self.delta @ self.delta.T  # (n, n)

    @property
    def dim(self) -> int:
        return self.delta.shape[1]

    def window_gram(self, rows: slice = slice(None), reference: str = MEAN) -> np.ndarray:
        if reference not in REFERENCES:
            raise ValueError(f"reference={reference!r} is not allowed; allowed: {', '.join(REFERENCES)}")
        gram = self.gram[rows, rows]
        return centre_gram(gram) if reference == MEAN else gram

    def eigenvalues(self, rows: slice = slice(None), reference: str = MEAN) -> np.ndarray:
        """The covariance eigenvalues of the window (times its length m), descending, >= 0: (m,)."""
        values = np.linalg.eigvalsh(self.window_gram(rows, reference))[::-1]
        return np.clip(values, 0.0, None)

    def principal_directions(self, k: int, rows: slice = slice(None), reference: str = MEAN) -> np.ndarray:
        """The window's top principal directions: (D, k') orthonormal columns by decreasing variance.

        k' = min(k, the number of non-zero eigenvalues): directions of zero variance are undefined.
        """
        values, vectors = np.linalg.eigh(self.window_gram(rows, reference))
        values, vectors = values[::-1], vectors[:, ::-1]  # descending
        k = min(int(k), int(np.sum(values > RANK_TOLERANCE * max(values[0], 0.0))))
        vectors = vectors[:, :k]  # (m, k)
        if reference == MEAN:
            # X_c^T v = X^T J v; J v = v in exact arithmetic, but rounding in v times the window's
            # (large) offset from w_first would leak into the direction.
            vectors = vectors - vectors.mean(axis=0)
        # Right singular vectors of X from left ones: u = X^T v / sigma, sigma = sqrt(lambda).
        return self.delta[rows].T @ (vectors / np.sqrt(values[:k]))  # (D, k)


def effective_rank(eigenvalues: np.ndarray, q: float) -> int | None:
    """r_q of descending eigenvalues: the smallest k whose top-k share of the sum reaches q; None if the sum is 0."""
    total = float(np.sum(eigenvalues))
    if not total > 0:
        return None
    share = np.cumsum(eigenvalues) / total
    return int(np.argmax(share >= q)) + 1 if share[-1] >= q else len(eigenvalues)


def spectrum_measures(eigenvalues: np.ndarray) -> dict[str, float | int | None]:
    """r90, r95, r99, participation_ratio and pc1_fraction of descending eigenvalues (None when all are 0)."""
    total = float(np.sum(eigenvalues))
    if not total > 0:
        return dict.fromkeys(MEASURES)
    measures: dict[str, float | int | None] = {name: effective_rank(eigenvalues, q) for name, q in QUANTILES.items()}
    measures["participation_ratio"] = total**2 / float(np.sum(np.square(eigenvalues)))
    measures["pc1_fraction"] = float(eigenvalues[0]) / total
    return measures


def principal_directions(snapshots: np.ndarray, k: int, reference: str = MEAN) -> np.ndarray:
    """Top-k principal directions of a trajectory of snapshots (n, ...): (D, k') orthonormal, float64.

    Directions are in the row-major flattening of one snapshot (D = its number of entries); k' <= k
    (see SnapshotGram.principal_directions). For windows, build a SnapshotGram once and slice it.
    """
    return SnapshotGram(snapshots).principal_directions(k, reference=reference)
