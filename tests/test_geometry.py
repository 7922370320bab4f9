"""The numerical core of aggregation: spectra through the Gram matrix, effective ranks, principal angles."""

import numpy as np
import pytest

from manifold_sweeps.geometry.spectrum import (
    DISPLACEMENT,
    MEAN,
    SnapshotGram,
    centre_gram,
    effective_rank,
    principal_directions,
    spectrum_measures,
)
from manifold_sweeps.geometry.subspaces import (
    mean_squared_cosine,
    pairwise_principal_cosines,
    principal_cosines,
    random_mean_squared_cosine,
    random_subspace,
)


def covariance_eigenvalues(flat: np.ndarray, reference: str) -> np.ndarray:
    """The definition itself: the explicit D x D covariance, eigen-decomposed (small D only)."""
    x = flat - flat.mean(axis=0) if reference == MEAN else flat - flat[0]
    cov = x.T @ x / len(x)  # (D, D)
    return np.sort(np.linalg.eigvalsh(cov))[::-1]


def r_q_from_definition(eigenvalues: np.ndarray, q: float) -> int:
    share = np.cumsum(eigenvalues) / eigenvalues.sum()
    return int(min(k + 1 for k in range(len(share)) if share[k] >= q))


def drifting_trajectory(rng, n: int, d: int, rank: int, noise: float = 0.0) -> np.ndarray:
    """W_0 plus a drift confined to `rank` fixed directions (plus isotropic noise): (n, d, d) float32."""
    w0 = rng.standard_normal((d, d))
    directions = np.linalg.qr(rng.standard_normal((d * d, rank)))[0]  # (D, rank)
    coefficients = np.cumsum(rng.standard_normal((n, rank)), axis=0) * np.geomspace(1.0, 0.2, rank)  # (n, rank)
    drift = (coefficients @ directions.T).reshape(n, d, d) * 0.05
    return (w0 + drift + noise * rng.standard_normal((n, d, d))).astype(np.float32)


@pytest.mark.parametrize("reference", [MEAN, DISPLACEMENT])
@pytest.mark.parametrize("seed", range(4))
def test_r_q_matches_an_eigendecomposition_of_the_explicit_covariance(seed, reference):
    rng = np.random.default_rng(seed)
    snapshots = drifting_trajectory(rng, n=15, d=5, rank=6, noise=0.01)
    flat = snapshots.reshape(15, -1).astype(np.float64)
    expected = covariance_eigenvalues(flat, reference)
    gram = SnapshotGram(snapshots)
    got = gram.eigenvalues(reference=reference) / 15  # the Gram's eigenvalues are n times Sigma's
    np.testing.assert_allclose(got, expected[: len(got)], rtol=1e-6, atol=1e-12 * expected[0])
    assert np.all(expected[len(got):] < 1e-10 * expected[0])  # the rest of Sigma's spectrum is zero
    measures = spectrum_measures(gram.eigenvalues(reference=reference))
    for name, q in (("r90", 0.90), ("r95", 0.95), ("r99", 0.99)):
        assert measures[name] == r_q_from_definition(expected, q)
    assert measures["participation_ratio"] == pytest.approx(expected.sum() ** 2 / np.sum(expected**2), rel=1e-6)
    assert measures["pc1_fraction"] == pytest.approx(expected[0] / expected.sum(), rel=1e-6)


def test_windows_are_sub_blocks_of_the_one_gram_matrix():
    rng = np.random.default_rng(7)
    snapshots = drifting_trajectory(rng, n=30, d=6, rank=4, noise=0.001)
    gram = SnapshotGram(snapshots)
    for rows in (slice(0, 10), slice(12, 25), slice(20, 30)):
        alone = SnapshotGram(snapshots[rows])
        for reference in (MEAN,):
            np.testing.assert_allclose(gram.eigenvalues(rows, reference), alone.eigenvalues(reference=reference),
                                       rtol=1e-8, atol=1e-12)
    # Displacement windows keep the run's first snapshot as W_0, not the window's first.
    late = slice(20, 30)
    explicit = covariance_eigenvalues(
        np.concatenate([snapshots[:1], snapshots[late]]).reshape(11, -1).astype(np.float64), DISPLACEMENT
    )
    np.testing.assert_allclose(gram.eigenvalues(late, DISPLACEMENT) / 10, explicit[:10] * 11 / 10, rtol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_a_trajectory_in_exactly_k_dimensions_has_r90_k(k):
    rng = np.random.default_rng(k)
    n, d = 40, 8
    w0 = rng.standard_normal(d * d)
    directions = np.linalg.qr(rng.standard_normal((d * d, k)))[0]  # (D, k)
    # Centred orthonormal coefficient columns: equal variance along each direction, so all k are
    # needed to reach 90% ((k-1)/k < 0.9 for every k here).
    raw = rng.standard_normal((n, k))
    coefficients = np.linalg.qr(raw - raw.mean(0))[0]  # (n, k)
    snapshots = (w0 + 0.01 * coefficients @ directions.T).reshape(n, d, d)
    measures = spectrum_measures(SnapshotGram(snapshots).eigenvalues())
    assert measures["r90"] == measures["r95"] == measures["r99"] == k
    assert measures["participation_ratio"] == pytest.approx(k, rel=1e-6)


def test_r90_is_unchanged_by_a_rotation_of_the_coordinates():
    rng = np.random.default_rng(3)
    n, d = 25, 6
    snapshots = drifting_trajectory(rng, n=n, d=d, rank=5, noise=0.003).astype(np.float64)
    rotation = np.linalg.qr(rng.standard_normal((d * d, d * d)))[0]  # (D, D) orthogonal
    rotated = snapshots.reshape(n, -1) @ rotation.T  # (n, D)
    for reference in (MEAN, DISPLACEMENT):
        before = SnapshotGram(snapshots).eigenvalues(reference=reference)
        after = SnapshotGram(rotated).eigenvalues(reference=reference)
        np.testing.assert_allclose(after, before, rtol=1e-8, atol=1e-12 * before[0])
        assert spectrum_measures(before) == pytest.approx(spectrum_measures(after))
        # A rotation that acts on the matrix itself (W -> R W S^T) is one such coordinate rotation.
        r, s = (np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(2))
        turned = np.einsum("ij,njk,lk->nil", r, snapshots, s)
        assert spectrum_measures(SnapshotGram(turned).eigenvalues(reference=reference))["r90"] == \
            spectrum_measures(before)["r90"]


def test_the_gram_keeps_its_digits_when_the_drift_is_tiny_next_to_w0():
    rng = np.random.default_rng(11)
    n, d = 60, 16
    w0 = 100.0 * rng.standard_normal(d * d)
    directions = np.linalg.qr(rng.standard_normal((d * d, 3)))[0]
    coefficients = rng.standard_normal((n, 3)) * np.array([3.0, 2.0, 1.0])
    drift = 1e-3 * coefficients @ directions.T  # (n, D)
    snapshots = (w0 + drift).astype(np.float32)
    # The exact spectrum of what float32 actually stored, computed in float64 by the definition.
    exact = covariance_eigenvalues(snapshots.astype(np.float64), MEAN)[:3]
    got = SnapshotGram(snapshots).eigenvalues()[:3] / n
    np.testing.assert_allclose(got, exact, rtol=1e-6)
    # The route this avoids, an uncentred float32 Gram centred afterwards, is far off: the test can tell.
    naive = np.linalg.eigvalsh(centre_gram(snapshots @ snapshots.T).astype(np.float64))[::-1][:3] / n
    assert np.max(np.abs(naive / exact - 1)) > 0.1


def test_a_constant_trajectory_has_no_effective_rank():
    snapshots = np.ones((5, 3, 3), np.float32)
    assert spectrum_measures(SnapshotGram(snapshots).eigenvalues()) == dict.fromkeys(
        ["r90", "r95", "r99", "participation_ratio", "pc1_fraction"]
    )
    assert effective_rank(np.zeros(4), 0.9) is None


def test_principal_directions_span_the_drift_and_are_orthonormal():
    rng = np.random.default_rng(5)
    n, d, k = 50, 7, 3
    directions = np.linalg.qr(rng.standard_normal((d * d, k)))[0]
    snapshots = (rng.standard_normal(d * d) + rng.standard_normal((n, k)) @ directions.T).reshape(n, d, d)
    for reference in (MEAN, DISPLACEMENT):
        found = principal_directions(snapshots, k=5, reference=reference)
        assert found.shape == (d * d, k)  # only k directions carry variance
        np.testing.assert_allclose(found.T @ found, np.eye(k), atol=1e-8)
        np.testing.assert_allclose(principal_cosines(found, directions), 1.0, atol=1e-8)
    # Ordered by variance: the first direction is the top eigenvector of the explicit covariance.
    flat = snapshots.reshape(n, -1)
    x = flat - flat.mean(0)
    top = np.linalg.eigh(x.T @ x)[1][:, -1]
    assert abs(principal_directions(snapshots, k=1)[:, 0] @ top) == pytest.approx(1.0, abs=1e-8)


def test_principal_angles_of_identical_and_orthogonal_subspaces():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((30, 6)))[0]
    a, b = basis[:, :3], basis[:, 3:]
    mixed = a @ np.linalg.qr(rng.standard_normal((3, 3)))[0] * 2.5  # the same span, another basis
    np.testing.assert_allclose(principal_cosines(a, mixed), 1.0, atol=1e-12)
    assert mean_squared_cosine(a, mixed) == pytest.approx(1.0)
    np.testing.assert_allclose(principal_cosines(a, b), 0.0, atol=1e-12)
    assert mean_squared_cosine(a, b) == pytest.approx(0.0, abs=1e-20)
    # Partial overlap: one shared direction out of three.
    half = np.column_stack([a[:, 0], b[:, 0], b[:, 1]])
    np.testing.assert_allclose(principal_cosines(a, half), [1.0, 0.0, 0.0], atol=1e-12)
    assert mean_squared_cosine(a, half) == pytest.approx(1 / 3)


def test_pairwise_cosines_from_one_stacked_product_match_pair_by_pair():
    rng = np.random.default_rng(2)
    bases = [random_subspace(50, k, rng) for k in (3, 5, 1, 4)]
    bases.append(bases[0] @ np.linalg.qr(rng.standard_normal((3, 3)))[0])  # the first subspace again
    pairwise = pairwise_principal_cosines(bases)
    assert sorted(pairwise) == [(i, j) for i in range(5) for j in range(i + 1, 5)]
    for (i, j), cosines in pairwise.items():
        np.testing.assert_allclose(cosines, principal_cosines(bases[i], bases[j]), atol=1e-12)
    np.testing.assert_allclose(pairwise[0, 4], 1.0, atol=1e-12)


@pytest.mark.parametrize("k_a,k_b,dim", [(3, 3, 40), (2, 5, 30), (4, 1, 20)])
def test_random_subspaces_match_the_expected_mean_squared_cosine(k_a, k_b, dim):
    rng = np.random.default_rng(k_a * 100 + k_b)
    fixed = random_subspace(dim, k_b, rng)
    samples = np.array([mean_squared_cosine(random_subspace(dim, k_a, rng), fixed) for _ in range(3000)])
    expected = random_mean_squared_cosine(k_a, k_b, dim)
    assert expected == max(k_a, k_b) / dim
    # The mean of 3000 draws sits within 4 standard errors of the exact expectation.
    assert abs(samples.mean() - expected) < 4 * samples.std() / np.sqrt(len(samples))
    # ... and the formula is not trivially loose: k/D is far from what identical subspaces give.
    assert expected < 0.5
