"""Distances between sets of features: Fréchet distance, KID, Jensen–Shannon divergence; and
precision, recall, density and coverage (k-nearest-neighbour manifolds)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.spatial.distance import cdist


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D), as in FID:
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return frechet_from_stats(mu_a, s_a, mu_b, s_b)


def frechet_from_stats(mu_a, s_a, mu_b, s_b) -> float:
    covmean = scipy.linalg.sqrtm(np.atleast_2d(s_a) @ np.atleast_2d(s_b))
    covmean = covmean.real
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))
    return max(value, 0.0)


def kernel_inception_distance(
    a: np.ndarray, b: np.ndarray, subsets: int = 10, subset_size: int = 100, seed: int = 0
) -> tuple[float, float]:
    """KID: the unbiased MMD² estimate with the cubic polynomial kernel (x·y/d + 1)³, averaged over
    random subsets; returns (mean, std)."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(a), len(b))
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        values.append(mmd2_unbiased(x, y))
    return float(np.mean(values)), float(np.std(values))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m, n = len(x), len(y)
    sum_xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    sum_yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sum_xx + sum_yy - 2 * kxy.mean())


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence in bits (0 for equal distributions, at most 1)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / b[keep])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def pca_basis(reference: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, (D, dims) basis) of the top principal components of a reference feature set."""
    mean = reference.mean(0)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    return mean, vt[:dims].T


def supported_dims(n_samples: int, dims: int, samples_per_dim: int = 10) -> int:
    """How many feature dimensions a Gaussian fit to n samples supports: n / 10, at least 2, at most
    the features' own. (A D-dimensional covariance needs well over D samples to be full rank.)"""
    return int(max(2, min(dims, n_samples // samples_per_dim)))


def reduced_frechet(
    reference: np.ndarray, a: np.ndarray, b: np.ndarray, samples_per_dim: int = 10
) -> tuple[float, int]:
    """FD between a and b in the top principal components of `reference`, with as many components as
    the smaller set supports; returns (FD, components used)."""
    dims = supported_dims(min(len(a), len(b)), a.shape[1], samples_per_dim)
    mean, basis = pca_basis(reference, dims)
    return frechet_distance((a - mean) @ basis, (b - mean) @ basis), dims


def _knn_radii(x: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Distance from each row of x to its k-th nearest other row (rows in chunks: memory N x chunk)."""
    # column 0 of a sorted row is the row itself (distance 0)
    return np.concatenate([np.partition(cdist(x[i : i + chunk], x), k, axis=1)[:, k] for i in range(0, len(x), chunk)])


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, chunk: int = 1024) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et
    al. 2020) of feature sets real (N, D) and fake (M, D), each set's manifold the union of balls
    reaching every sample's k-th nearest neighbour. precision: share of fakes inside the real
    manifold (are they realistic?); recall: share of reals inside the fake manifold (is every kind of
    real sample drawn?); density: real balls containing a fake, per fake, over k (1 on average for
    a perfect generator, robust to real outliers); coverage: share of reals whose ball holds a fake.
    Fakes are compared in chunks, so memory stays N x chunk whatever M."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set ({len(real)}, {len(fake)})")
    r_real, r_fake = _knn_radii(real, k, chunk), _knn_radii(fake, k, chunk)
    precise, balls = np.zeros(len(fake), bool), np.zeros(len(fake))
    recalled, nearest = np.zeros(len(real), bool), np.full(len(real), np.inf)
    for j in range(0, len(fake), chunk):
        d = cdist(real, fake[j : j + chunk])  # (N, chunk)
        inside_real = d <= r_real[:, None]  # fake inside real i's ball
        precise[j : j + chunk], balls[j : j + chunk] = inside_real.any(0), inside_real.sum(0)
        recalled |= (d <= r_fake[None, j : j + chunk]).any(1)
        nearest = np.minimum(nearest, d.min(1))
    return {
        "precision": float(precise.mean()),
        "recall": float(recalled.mean()),
        "density": float(balls.mean() / k),
        "coverage": float((nearest <= r_real).mean()),
        "k": k,
    }
