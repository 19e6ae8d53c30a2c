"""Synthetic feature sets with controlled spectra for the engine tests, and the independent
references the engine is checked against (scipy ``sqrtm`` as pytorch-fid uses it, and a
from-scratch recompute of the modified pool)."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def spectrum_basis(rng: np.random.Generator, d: int, condition: float) -> np.ndarray:
    """A random orthonormal basis scaled by square roots of eigenvalues spread log-uniformly
    over ``[1/condition, 1]``: ``features = z @ basis.T`` has that covariance condition."""
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    eigenvalues = np.logspace(0.0, -np.log10(condition), d) if d > 1 else np.ones(1)
    return basis * np.sqrt(eigenvalues)


def features(rng: np.random.Generator, n: int, basis: np.ndarray, offset: float) -> np.ndarray:
    return rng.normal(size=(n, basis.shape[0])) @ basis.T + offset


def target_of(rng: np.random.Generator, d: int, condition: float) -> tuple[np.ndarray, np.ndarray]:
    """Target mean and covariance (exact condition number ``condition``)."""
    basis = spectrum_basis(rng, d, condition)
    return rng.normal(scale=0.3, size=d), basis @ basis.T


def scipy_fd(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """pytorch-fid's formula: ``tr sqrtm(S1 S2)`` by scipy, imaginary round-off dropped."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def recomputed_fds(
    pool: np.ndarray, groups: np.ndarray, rows: np.ndarray, mu: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """FD of each modified pool, rebuilt from scratch (mean, covariance, symmetric root)."""
    from reward_service.engine import frechet_distance

    fds = []
    for group, replaced in zip(groups, rows, strict=True):
        modified = pool.copy()
        modified[replaced] = group
        fds.append(frechet_distance(modified.mean(0), np.cov(modified, rowvar=False), mu, sigma))
    return np.array(fds)
