"""The metrics' arithmetic on features, in float64 numpy: Fréchet distance (FID), unbiased kernel MMD (KID) and the
Inception Score (IS). No scipy: the matrix square root comes from symmetric eigendecompositions."""
from __future__ import annotations

import numpy as np

from stylelens.errors import StylelensError

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
IS_SPLITS = 10


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix; round-off negative eigenvalues count as 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, sqrt_sigma1: np.ndarray | None = None) -> float:
    """tr sqrt(S1 S2) for covariances S1, S2: the eigenvalues of S1 S2 are those of the symmetric
    sqrt(S1) S2 sqrt(S1), so it is the sum of their square roots. `sqrt_sigma1` saves recomputing sqrt(S1)."""
    root = psd_sqrt(sigma1) if sqrt_sigma1 is None else sqrt_sigma1
    middle = root @ sigma2 @ root
    values = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(values, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                     sqrt_sigma1: np.ndarray | None = None) -> float:
    """Fréchet distance of two Gaussians: |mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2)); FID on pool3 statistics.
    Scoring many S2 against one S1? pass `sqrt_sigma1 = psd_sqrt(S1)` once and save an eigendecomposition each."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[-1] if mu1.ndim == 1 else None
    if d is None or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise StylelensError(f'FID needs means [D] and covariances [D, D] of one size, got {mu1.shape}, '
                             f'{sigma1.shape}, {mu2.shape}, {sigma2.shape}')
    diff = mu1 - mu2
    cross = trace_sqrt_product(sigma1, sigma2, sqrt_sigma1)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * cross)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel k(x, y) = (x.y / d + 1)^3 between the rows of x and y."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of the squared MMD between the distributions behind samples x [m, d] and y [n, d]:
    kernel means over distinct pairs within each sample, minus twice the mean across samples."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise StylelensError(f'KID needs at least 2 samples on each side, got {m} and {n}')
    kxx, kyy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * polynomial_kernel(x, y).mean())


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, *, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation of the unbiased MMD^2 over `subsets` random subsets (drawn without
    replacement, seeded) of min(subset_size, n1, n2) rows of each feature set."""
    x, y = np.asarray(features1), np.asarray(features2)
    if subsets < 1 or subset_size < 2:
        raise StylelensError(f'KID needs at least 1 subset of at least 2 samples (got {subsets} subsets of '
                             f'{subset_size})')
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise StylelensError(f'KID needs two feature sets [N, D] of one D, got {x.shape} and {y.shape}')
    size = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):  # rows are taken first, then made float64: the whole sets never are
        rows_x, rows_y = rng.choice(len(x), size, replace=False), rng.choice(len(y), size, replace=False)
        values.append(mmd2_unbiased(x[rows_x].astype(np.float64), y[rows_y].astype(np.float64)))
    return float(np.mean(values)), float(np.std(values))


def inception_score(logits: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """IS: exp of the mean KL divergence between each image's class distribution (softmax of its logits) and their
    average, per consecutive split; returns the mean and standard deviation over the splits."""
    z = np.asarray(logits, np.float64)
    if z.ndim != 2 or splits < 1 or len(z) < splits:
        raise StylelensError(f'IS needs logits [N, classes] with N >= splits, got shape {z.shape} and {splits} '
                             f'splits')
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for part in range(splits):
        rows = slice(part * len(z) // splits, (part + 1) * len(z) // splits)
        log_marginal = np.log(np.maximum(p[rows].mean(axis=0), np.finfo(np.float64).tiny))  # 0 where p is 0
        kl = (p[rows] * (log_p[rows] - log_marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
