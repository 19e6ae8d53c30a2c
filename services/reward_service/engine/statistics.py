"""Sufficient statistics of a pool that keep their digits, with a bound on what they have lost.

Sums are kept about a shift ``c`` (the pool mean when they were last computed from the rows)::

    total = sum (x - c),   gram = sum (x - c)(x - c)^T,
    mean = c + total / n,  (n - 1) S = gram - total total^T / n

Raw sums ``sum x x^T`` lose ``|mean|^2 / tr S`` of the covariance's relative digits to the
cancellation in ``G - n mu mu^T`` (1e8 of them at a common offset of 1e4); about a shift near the
mean nothing cancels.

Replacing rows updates the sums in O(m d^2), and every update rounds: a row of 1e18 added and
later removed leaves an error of about ``u 1e36`` in ``gram`` that no later update takes back.
Each update therefore adds a rigorous first-order bound of its own rounding error (Higham,
*Accuracy and Stability of Numerical Algorithms*, 2nd ed., sec. 3.1 and 3.5: a sum or inner
product of ``m`` terms errs by at most ``gamma_m sum |terms|``, ``gamma_m = m u / (1 - m u)``):

* ``gram``: the error of ``(X - c)^T (X - c)`` over ``m`` rows is bounded entrywise by
  ``gamma_m sum_k |x_k - c| |x_k - c|^T``, a PSD matrix of trace ``gamma_m sum_k |x_k - c|^2``;
  adding it to ``gram`` rounds by at most ``u |gram_ij| <= u sqrt(gram_ii gram_jj)``, again a PSD
  bound, of trace ``u tr gram``. ``gram_error`` sums these traces: the accumulated error matrix
  ``E`` satisfies ``|tr E| <= gram_error`` and ``||E||_2 <= gram_error``.
* ``total``: likewise, ``sum_error`` bounds the 2-norm of its accumulated error.

:meth:`ShiftedSums.stale` compares the bounds with the covariance they corrupt; the engine then
recomputes the sums from the rows it holds (two passes, about their new mean) instead of updating
them, so the statistics stay within ``rtol`` of a from-scratch computation whatever passed
through the ring. Compensated (double-double) sums would only shrink the constant: the
per-update GEMM error of a 1e18 row (``u 1e36``) is already far beyond anything a normal pool
can absorb, so a recompute is needed either way, and the bound is what says when.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .linalg import symmetrize

__all__ = ["ShiftedSums", "unit_roundoff_gamma"]

_UNIT_ROUNDOFF = 2.0**-53
_RECOMPUTE_ROWS = 8192  # rows centred at once by a recompute: bounds its temporary memory


def unit_roundoff_gamma(terms: int) -> float:
    """Higham's ``gamma_m = m u / (1 - m u)`` for float64."""
    product = terms * _UNIT_ROUNDOFF
    return product / (1.0 - product)


@dataclass(frozen=True)
class ShiftedSums:
    """``total = sum (x - shift)``, ``gram = sum (x - shift)(x - shift)^T`` over ``n`` rows, and
    bounds on the rounding error their running updates added since they were last recomputed
    from the rows (``sum_error`` on ``|total|``, ``gram_error`` on the trace and 2-norm of
    ``gram``'s error)."""

    shift: torch.Tensor
    total: torch.Tensor
    gram: torch.Tensor
    n: int
    sum_error: float = 0.0
    gram_error: float = 0.0

    @classmethod
    def of_rows(cls, rows: torch.Tensor) -> ShiftedSums:
        """Two passes: the mean, then the sums about it (in blocks of rows)."""
        shift = rows.mean(0)
        total = torch.zeros_like(shift)
        gram = torch.zeros(shift.shape[0], shift.shape[0], dtype=rows.dtype, device=rows.device)
        for start in range(0, rows.shape[0], _RECOMPUTE_ROWS):
            centred = rows[start : start + _RECOMPUTE_ROWS] - shift
            total += centred.sum(0)
            gram += centred.T @ centred
        return cls(shift, total, symmetrize(gram), rows.shape[0])

    @property
    def mean(self) -> torch.Tensor:
        return self.shift + self.total / self.n

    def covariance(self) -> torch.Tensor:
        """Unbiased covariance (ddof 1): ``(gram - total total^T / n) / (n - 1)``."""
        correction = torch.outer(self.total, self.total) / self.n
        return symmetrize((self.gram - correction) / (self.n - 1))

    def trace_covariance(self) -> float:
        """``tr S``, without forming ``S``: ``(tr gram - |total|^2 / n) / (n - 1)``."""
        scatter = self.gram.diagonal().sum() - self.total.square().sum() / self.n
        return float(scatter) / (self.n - 1)

    def replaced(self, removed: torch.Tensor, added: torch.Tensor) -> ShiftedSums:
        """The sums after rows ``removed`` (m, d) are replaced by ``added`` (m, d), with the
        rounding of this update added to the bounds."""
        gone, new = removed - self.shift, added - self.shift
        rows = removed.shape[0]
        # +4: the rounding of x - c (relative u per entry, 2u in a product) and of the two
        # additions into the running sums.
        gamma = unit_roundoff_gamma(rows + 4)
        mass = float(gone.square().sum() + new.square().sum())
        lengths = float(gone.norm(dim=1).sum() + new.norm(dim=1).sum())
        gram_before = float(self.gram.diagonal().abs().sum())
        return ShiftedSums(
            shift=self.shift,
            total=self.total - gone.sum(0) + new.sum(0),
            gram=symmetrize(self.gram - gone.T @ gone + new.T @ new),
            n=self.n,
            sum_error=self.sum_error + gamma * (float(self.total.norm()) + lengths),
            gram_error=self.gram_error + gamma * (gram_before + mass),
        )

    def stale(self, rtol: float) -> bool:
        """Whether the accumulated rounding may have moved the mean by more than ``rtol``
        standard deviations (``sqrt(tr S)``) or the covariance by more than ``rtol tr S``.

        The covariance bound adds the error the mean's error causes in ``total total^T / n``
        and the rounding of forming ``gram - total total^T / n`` itself (4 u tr gram), which
        grows as the pool drifts from the shift: a drift of ``sqrt(rtol / 4u)`` standard
        deviations makes the sums stale even without rounding from updates."""
        scatter = float(self.covariance().diagonal().sum()) * (self.n - 1)
        if not scatter > 0.0:
            return self.sum_error > 0.0 or self.gram_error > 0.0
        total_norm = float(self.total.norm())
        covariance_error = (
            self.gram_error
            + (2.0 * total_norm + self.sum_error) * self.sum_error / self.n
            + 4.0 * _UNIT_ROUNDOFF * float(self.gram.diagonal().abs().sum())
        )
        mean_error = self.sum_error / self.n
        spread = (scatter / (self.n - 1)) ** 0.5
        return covariance_error > rtol * scatter or mean_error > rtol * spread
