"""Principal angles between subspaces, and what random subspaces would give.

The principal angles theta_1 <= ... <= theta_p (p = min(k_a, k_b)) between span(A) and span(B)
have cosines equal to the singular values of Qa^T Qb, with Qa, Qb orthonormal bases. Alignment is
summarised by the mean squared cosine, (1/p) sum cos^2 theta_i = ||Qa^T Qb||_F^2 / p: 1 when one
subspace contains the other, 0 when they are orthogonal.

Random expectation (exact, any D): let span(A) be a uniformly random k_a-dimensional subspace of
R^D and span(B) any k_b-dimensional one. sum cos^2 = ||Qa^T Qb||_F^2 = tr(P_A P_B) with P the
orthogonal projections. E[P_A] commutes with every rotation, so it is a multiple of I, and its
trace is k_a: E[P_A] = (k_a / D) I. Hence E[sum cos^2] = k_a k_b / D, and the mean over the
p = min(k_a, k_b) angles is

    E[mean cos^2] = k_a k_b / (D min(k_a, k_b)) = max(k_a, k_b) / D     (k / D when k_a = k_b = k).
"""

from __future__ import annotations

import numpy as np


def orthonormal_basis(vectors: np.ndarray) -> np.ndarray:
    """(D, k) columns spanning a subspace -> (D, k) orthonormal columns spanning the same one."""
    q, _ = np.linalg.qr(np.asarray(vectors, dtype=np.float64))
    return q


def principal_cosines(a: np.ndarray, b: np.ndarray, orthonormal: bool = False) -> np.ndarray:
    """Cosines of the principal angles between span(a) and span(b) ((D, k_a), (D, k_b)): descending, (min(k_a, k_b),).

    orthonormal=True skips the QR of both inputs (when comparing many pairs, orthonormalise each once).
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"subspaces of different ambient dimensions: {a.shape[0]} and {b.shape[0]}")
    if not orthonormal:
        a, b = orthonormal_basis(a), orthonormal_basis(b)
    cosines = np.linalg.svd(a.T @ b, compute_uv=False)  # (min(k_a, k_b),)
    return np.clip(cosines, 0.0, 1.0)


def pairwise_principal_cosines(bases: list[np.ndarray]) -> dict[tuple[int, int], np.ndarray]:
    """principal_cosines of every pair i < j of orthonormal bases (D, k_i), from one product of their stack.

    One (K x D)(D x K) product, K = sum k_i, replaces a thin product per pair: many seeds' subspaces
    are compared at the cost of one.
    """
    stacked = np.concatenate(bases, axis=1)  # (D, K)
    products = stacked.T @ stacked  # (K, K): block (i, j) is basis_i^T basis_j
    edges = np.cumsum([0] + [b.shape[1] for b in bases])
    cosines = {}
    for i in range(len(bases)):
        for j in range(i + 1, len(bases)):
            block = products[edges[i]:edges[i + 1], edges[j]:edges[j + 1]]  # (k_i, k_j)
            cosines[i, j] = np.clip(np.linalg.svd(block, compute_uv=False), 0.0, 1.0)
    return cosines


def mean_squared_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.square(principal_cosines(a, b))))


def random_mean_squared_cosine(k_a: int, k_b: int, dim: int) -> float:
    """E[mean squared cosine] between a uniformly random k_a-subspace and any k_b-subspace of R^dim."""
    return max(k_a, k_b) / dim


def random_subspace(dim: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed k-dimensional subspace of R^dim: (dim, k) orthonormal columns."""
    return orthonormal_basis(rng.standard_normal((dim, k)))
