"""Reference statistics: float64 mean and covariance of feature rows, and their ``.npz`` files.

The files are pytorch-fid's (``mu``, ``sigma`` float64; ADM and EDM reference batches use the same
two names), plus a string array ``feature_space`` holding the `FeatureSpace` identifier. Other
tools ignore the extra member; files without it load with feature space ``"unknown"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .._encoding import read_stats
from ._space import UNKNOWN_FEATURE_SPACE, FeatureSpace

__all__ = ["ReferenceStats", "StatsAccumulator", "load_stats", "save_stats"]

Float64Array = npt.NDArray[np.float64]


class StatsAccumulator:
    """Mean and covariance of feature rows fed in batches, in float64, around a fixed shift.

    With ``c`` the first batch's mean, ``s = sum (x - c)`` and ``G = sum (x - c)(x - c)^T``::

        mu = c + s / n,    sigma = (G - s s^T / n) / (n - 1)

    The shift keeps ``G - s s^T / n`` from cancelling: the raw second moment (EDM2's
    ``sum x x^T - n mu mu^T``) loses about ``|mu|^2 / var`` of float64's digits; the shifted
    one only ``|mu - c|^2 / var``, so the result equals numpy's two-pass ``np.cov`` to rounding.
    """

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.count = 0
        self._shift: Float64Array | None = None
        self._sum = np.zeros(dim, np.float64)
        self._gram = np.zeros((dim, dim), np.float64)

    def update(self, features: npt.ArrayLike) -> None:
        """Add rows ``features`` (n, dim), any float dtype; non-finite values are refused."""
        rows = np.asarray(features, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"features must be (n, {self.dim}), got shape {rows.shape}")
        if not np.isfinite(rows).all():
            raise ValueError("features contain NaN or Inf")
        if len(rows) == 0:
            return
        if self._shift is None:
            self._shift = rows.mean(axis=0)
        centred = rows - self._shift
        self._sum += centred.sum(axis=0)
        self._gram += centred.T @ centred
        self.count += len(rows)

    def result(self) -> tuple[Float64Array, Float64Array]:
        """``(mu, sigma)``: the mean (dim,) and the unbiased covariance (dim, dim)."""
        if self._shift is None or self.count < 2:
            raise ValueError(f"statistics need at least 2 feature rows, got {self.count}")
        n = self.count
        mu = self._shift + self._sum / n
        sigma = (self._gram - np.outer(self._sum, self._sum) / n) / (n - 1)
        # G - s s^T / n is symmetric in exact arithmetic; make it so in floating point too.
        sigma = (sigma + sigma.T) / 2
        return mu, sigma


@dataclass(frozen=True)
class ReferenceStats:
    """Target statistics: ``mu`` (d,), ``sigma`` (d, d) float64, and the identifier of the
    feature space they were computed in (``"unknown"`` for files from other tools)."""

    mu: Float64Array
    sigma: Float64Array
    feature_space: str

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def save_stats(
    path: str | Path,
    mu: npt.ArrayLike,
    sigma: npt.ArrayLike,
    feature_space: FeatureSpace | str,
) -> Path:
    """Write a pytorch-fid-compatible ``.npz`` (``mu``, ``sigma`` float64, ``feature_space``).

    The file is written beside its final name and renamed into place, so an interrupted run never
    leaves a truncated file that a later run would trust.
    """
    mu64 = np.asarray(mu, dtype=np.float64)
    sigma64 = np.asarray(sigma, dtype=np.float64)
    d = mu64.shape[0] if mu64.ndim == 1 else -1
    if mu64.ndim != 1 or sigma64.shape != (d, d):
        raise ValueError(f"need mu (d,) and sigma (d, d), got {mu64.shape} and {sigma64.shape}")
    space = feature_space.id if isinstance(feature_space, FeatureSpace) else feature_space
    target = Path(path)
    if target.suffix != ".npz":
        raise ValueError(f"statistics files end in .npz, got {target}")
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}.npz")
    np.savez(tmp, mu=mu64, sigma=sigma64, feature_space=np.array(space))
    os.replace(tmp, target)
    return target


def load_stats(path: str | Path) -> ReferenceStats:
    """Read ``mu`` and ``sigma`` (and ``feature_space`` when present) from an ``.npz``; other
    members (an ADM batch's images) are not read.

    Never unpickles: ``allow_pickle=False`` refuses object arrays.
    """
    mu, sigma, space = read_stats(path)
    feature_space = UNKNOWN_FEATURE_SPACE if space is None else space
    return ReferenceStats(mu=mu, sigma=sigma, feature_space=feature_space)
