"""Shape and value checks for what callers hand the engine; each failure says what to fix."""

from __future__ import annotations

import torch

__all__ = ["MAX_FEATURE_MAGNITUDE", "check_features", "check_groups"]

MAX_FEATURE_MAGNITUDE = 1e100
"""Largest feature value the engine accepts. Sums of squares over N rows and d columns then stay
below ``N d 1e200``, far inside float64's 1.8e308 for any pool that fits in memory, so every
statistic, eigenvalue and FD stays finite. Every float32 and float16 value is within it."""


def _check_values(tensor: torch.Tensor, name: str) -> None:
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or Inf values; send finite features")
    if tensor.numel() and float(tensor.abs().max()) > MAX_FEATURE_MAGNITUDE:
        raise ValueError(
            f"{name} has values beyond +-{MAX_FEATURE_MAGNITUDE:g}, more than float64 statistics "
            "of them can hold; rescale the features"
        )


def check_features(
    features: torch.Tensor, d: int, name: str = "features", min_rows: int = 1
) -> None:
    """``features`` must be (n, d) with ``n >= min_rows``, finite and within
    :data:`MAX_FEATURE_MAGNITUDE`."""
    if features.ndim != 2 or features.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}); got {tuple(features.shape)}")
    if features.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got {features.shape[0]}")
    _check_values(features, name)


def check_groups(groups: torch.Tensor, d: int) -> None:
    """``groups`` must be (G, K, d), non-empty, finite and within
    :data:`MAX_FEATURE_MAGNITUDE`."""
    if groups.ndim != 3 or groups.shape[2] != d:
        raise ValueError(f"groups must have shape (G, K, {d}); got {tuple(groups.shape)}")
    if groups.shape[0] == 0 or groups.shape[1] == 0:
        raise ValueError(f"groups must be non-empty; got shape {tuple(groups.shape)}")
    _check_values(groups, "groups")
