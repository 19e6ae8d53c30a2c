"""A version's precompute built in another process: what travels, and the check that it is the
precompute of this engine's own pool before the engine adopts it instead of building it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .statistics import ShiftedSums
from .versions import Built, Head

__all__ = ["ADOPTION_RTOL", "BuiltArrays", "NotAdoptable", "check_adopted"]

ADOPTION_RTOL = 1e-9
"""How closely a precompute built elsewhere must agree with this engine's own version before it
is adopted: the sum of its eigenvalues with ``tr(A S A)`` of this engine's rows, and the base FD
they give with the one this engine certified (beyond that one's own error estimate), both
relative to max(1, value). Another pool (another incarnation, a diverged log) misses by far."""


@dataclass(frozen=True)
class BuiltArrays:
    """A version's precompute as it travels between processes: ``M = A S A``
    (``spectrum_matrix``), its ascending ``eigenvalues``, ``projector = Q^T A``, and the base
    FD its builder computed, float64."""

    version: int
    base_fd: float
    eigenvalues: np.ndarray
    projector: np.ndarray
    spectrum_matrix: np.ndarray

    @classmethod
    def of(cls, built: Built) -> BuiltArrays:
        """Copies of ``built``'s precompute, on the host."""
        return cls(
            version=built.version,
            base_fd=built.base_fd,
            eigenvalues=built.eigenvalues.cpu().numpy().copy(),
            projector=built.projector.cpu().numpy().copy(),
            spectrum_matrix=built.spectrum_matrix.cpu().numpy().copy(),
        )

    def fits(self, d: int) -> bool:
        """Whether the arrays have the shapes of a precompute of width ``d``."""
        square = (d, d)
        return (
            self.eigenvalues.shape == (d,)
            and self.projector.shape == square
            and self.spectrum_matrix.shape == square
        )


class NotAdoptable(Exception):
    """A precompute from elsewhere that does not match this engine's pool at its version."""


def check_adopted(built: Built, sums: ShiftedSums, target_sigma: torch.Tensor, head: Head) -> None:
    """Raise :class:`NotAdoptable` where ``built`` (from elsewhere, on ``sums`` of this engine's
    rows; ``target_sigma`` the target's covariance) is not the precompute of ``head``'s pool."""
    # tr(A S A) = tr(S S_r), elementwise for symmetric S and S_r: O(d^2).
    traced = float((sums.covariance() * target_sigma).sum())
    held = float(built.eigenvalues.sum())
    if not abs(held - traced) <= ADOPTION_RTOL * max(1.0, abs(traced)):
        raise NotAdoptable(f"eigenvalues sum to {held}, A S A has trace {traced}")
    tolerance = ADOPTION_RTOL * max(1.0, abs(head.base_fd)) + head.base_error
    if not abs(built.base_fd - head.base_fd) <= tolerance:
        raise NotAdoptable(f"base FD {built.base_fd} against {head.base_fd}")
