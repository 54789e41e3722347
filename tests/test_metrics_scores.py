"""FID, KID and IS arithmetic against closed forms: Gaussians with known covariances, exact expectations of the KID
estimator, and class predictions whose Inception Score is known."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from stylelens.errors import StylelensError
from stylelens.metrics.features import statistics
from stylelens.metrics.scores import (
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    polynomial_kernel,
    psd_sqrt,
    trace_sqrt_product,
)


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_fid_of_diagonal_gaussians_is_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fid_of_commuting_covariances_is_the_closed_form() -> None:
    rng = np.random.default_rng(1)
    q = random_orthogonal(8, rng)
    a, b = rng.uniform(0.01, 4, size=8), rng.uniform(0.01, 4, size=8)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.sum(np.sqrt(a * b))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


def test_a_precomputed_square_root_gives_the_same_distance() -> None:
    rng = np.random.default_rng(7)
    (mu1, s1), (mu2, s2) = statistics(rng.normal(size=(50, 6))), statistics(rng.normal(size=(50, 6)) * 2)
    root = psd_sqrt(s1)
    assert np.allclose(root @ root, s1)
    assert frechet_distance(mu1, s1, mu2, s2, sqrt_sigma1=root) == pytest.approx(frechet_distance(mu1, s1, mu2, s2))


def test_trace_sqrt_product_matches_scipy_sqrtm_for_general_covariances() -> None:
    linalg = pytest.importorskip('scipy.linalg')
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6))
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    assert not np.allclose(s1 @ s2, s2 @ s1)
    assert trace_sqrt_product(s1, s2) == pytest.approx(np.trace(linalg.sqrtm(s1 @ s2)).real, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_even_when_singular() -> None:
    rng = np.random.default_rng(3)
    for n in (500, 20):  # full rank, then rank 19 of 64 (fewer samples than dimensions)
        mu, sigma = statistics(rng.normal(size=(n, 64)) * rng.uniform(0.1, 5, size=64))
        assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_statistics_are_float64_mean_and_unbiased_covariance() -> None:
    x = np.random.default_rng(4).normal(size=(30, 5)).astype(np.float32)
    mu, sigma = statistics(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False, ddof=1), rtol=1e-12)
    with pytest.raises(StylelensError, match='at least 2'):
        statistics(x[:1])


def test_fid_refuses_mismatched_shapes() -> None:
    with pytest.raises(StylelensError, match='one size'):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def _population_mmd2(points: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    k = polynomial_kernel(points, points)
    return float(p @ k @ p + q @ k @ q - 2 * p @ k @ q)


def test_kid_estimator_is_exactly_unbiased() -> None:
    """Averaged over every possible pair of i.i.d. samples (3 draws each from a 3-point distribution), weighted by
    probability, the estimate equals the population MMD^2."""
    points = np.array([[0.0, 1.0], [2.0, 0.5], [1.0, 3.0]])
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.3, 0.6])
    expectation = 0.0
    for xs in itertools.product(range(3), repeat=3):
        for ys in itertools.product(range(3), repeat=3):
            weight = np.prod(p[list(xs)]) * np.prod(q[list(ys)])
            expectation += weight * mmd2_unbiased(points[list(xs)], points[list(ys)])
    assert expectation == pytest.approx(_population_mmd2(points, p, q), rel=1e-12)


def test_kid_of_one_distribution_is_near_zero_and_of_two_is_not() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, same_std = kernel_inception_distance(x, y, subsets=50, subset_size=200)
    shifted, _ = kernel_inception_distance(x, y + 0.5, subsets=50, subset_size=200)
    assert abs(same) < 3 * same_std and shifted > 20 * same_std


def test_kid_subsets_are_seeded_and_capped_by_the_sample_size() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(20, 4)) + 1
    assert kernel_inception_distance(x, y, subsets=5, seed=1) == kernel_inception_distance(x, y, subsets=5, seed=1)
    assert kernel_inception_distance(x, y, subsets=5, seed=1) != kernel_inception_distance(x, y, subsets=5, seed=2)
    full = kernel_inception_distance(x[:20], y, subsets=1, subset_size=1000)  # 20 of 20: the only subset
    assert full[0] == pytest.approx(mmd2_unbiased(x[:20], y)) and full[1] == 0
    with pytest.raises(StylelensError, match='at least 2 samples'):
        kernel_inception_distance(x[:1], y)


def test_inception_score_of_uniform_predictions_is_one() -> None:
    mean, std = inception_score(np.zeros((100, 1008)))
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0, abs=1e-12)


def test_inception_score_of_confident_even_predictions_is_the_class_count() -> None:
    classes = 7
    logits = 100 * np.eye(classes)[np.arange(10 * classes * 3) % classes]  # every split holds each class 3 times
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(classes, rel=1e-9) and std == pytest.approx(0, abs=1e-9)


def test_inception_score_of_one_confident_class_is_one_and_splits_are_checked() -> None:
    logits = np.zeros((20, 10))
    logits[:, 3] = 50
    assert inception_score(logits, splits=2)[0] == pytest.approx(1.0)
    with pytest.raises(StylelensError, match='splits'):
        inception_score(logits, splits=21)
