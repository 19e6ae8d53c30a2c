"""Shape and value checks for what callers hand the engine; each failure says what to fix."""

from __future__ import annotations

import torch

__all__ = ["check_features", "check_groups"]


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or Inf values; send finite features")


def check_features(
    features: torch.Tensor, d: int, name: str = "features", min_rows: int = 1
) -> None:
    """``features`` must be (n, d) with ``n >= min_rows`` and finite."""
    if features.ndim != 2 or features.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}); got {tuple(features.shape)}")
    if features.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got {features.shape[0]}")
    _check_finite(features, name)


def check_groups(groups: torch.Tensor, d: int) -> None:
    """``groups`` must be (G, K, d), non-empty and finite."""
    if groups.ndim != 3 or groups.shape[2] != d:
        raise ValueError(f"groups must have shape (G, K, {d}); got {tuple(groups.shape)}")
    if groups.shape[0] == 0 or groups.shape[1] == 0:
        raise ValueError(f"groups must be non-empty; got shape {tuple(groups.shape)}")
    _check_finite(groups, "groups")
