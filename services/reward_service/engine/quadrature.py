"""Quadrature for changes of ``tr sqrt`` under a low-rank update.

For symmetric positive definite ``M`` and ``M' = M + dM``,

    tr sqrt(M') - tr sqrt(M) = (1/pi) * integral_0^inf log det[(M' + t^2)(M + t^2)^-1] dt

which follows, eigenvalue by eigenvalue, from ``integral_0^inf log((a^2 + t^2)/(b^2 + t^2)) dt =
pi (a - b)``. With ``M = Q diag(lam) Q^T`` and ``dM = Q W diag(c) W^T Q^T`` (W orthonormal, d x r),
the integrand is ``log det(I_r + diag(c) W^T (diag(lam) + t^2)^-1 W)``: one d x r x r product per
node instead of a d x d eigenproblem.

The integrand is analytic in ``t`` except for branch points at ``t = +-i sqrt(lambda)``, lambda in
the spectra of ``M`` and ``M'``. For a spectrum inside ``[lo, hi]``, the substitution of Hale,
Higham & Trefethen (2008), ``t = sqrt(lo) sc(u | 1 - lo/hi)`` on ``u in (0, K)``, and the midpoint
rule converge like ``exp(-2 pi^2 n / (log(hi/lo) + 6))``: about 25 nodes for 1e-9 at
``hi/lo = 1e8``, against 100+ for Gauss-Legendre in ``log t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ellipj, ellipkm1

__all__ = ["QuadratureRule", "convergence_exponent", "nodes_needed", "sqrt_trace_rule"]


@dataclass(frozen=True)
class QuadratureRule:
    """Nodes ``t`` and weights ``w`` such that ``integral_0^inf f(t) dt ~= sum w f(t)``."""

    nodes: np.ndarray
    weights: np.ndarray


def convergence_exponent(condition: float) -> float:
    """``a`` in the error rate ``exp(-a n)`` of the rule at spectral condition ``hi/lo``:
    ``a = 2 pi^2 / (log(condition) + 6)`` (Hale, Higham & Trefethen; conservative in our
    measurements, which converged somewhat faster at high condition)."""
    return 2 * math.pi**2 / (math.log(max(condition, 1.0)) + 6.0)


def nodes_needed(condition: float, tolerance: float) -> int:
    """Nodes for a relative error ``tolerance`` at spectral condition ``hi/lo = condition``."""
    return math.ceil(math.log(1.0 / tolerance) / convergence_exponent(condition))


def sqrt_trace_rule(lo: float, hi: float, n: int) -> QuadratureRule:
    """The midpoint rule with ``n`` nodes under the map ``t = sqrt(lo) sc(u | 1 - lo/hi)``.

    ``dt/du = sqrt(lo) dn(u) / cn(u)^2``. Near ``u = K`` both ``cn`` and the parameter's
    closeness to 1 cost scipy accuracy, so the upper half of the nodes is evaluated through
    ``v = K - u`` with ``sc(K - v) = cn(v) / (k' sn(v))`` and
    ``dn(K - v) / cn(K - v)^2 = dn(v) / (k' sn(v)^2)``, ``k' = sqrt(lo/hi)``; ``ellipkm1`` gives
    ``K`` from the complementary parameter directly.
    """
    if not (0.0 < lo <= hi) or n < 1:
        raise ValueError(f"need 0 < lo <= hi and n >= 1, got lo={lo}, hi={hi}, n={n}")
    complementary = lo / hi
    parameter = 1.0 - complementary
    period = float(ellipkm1(complementary))
    k_prime = math.sqrt(complementary)
    u = (np.arange(n) + 0.5) * period / n
    v = period - u
    lower = u <= v
    sn, cn, dn, _ = ellipj(np.where(lower, u, v), parameter)
    root_lo = math.sqrt(lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        nodes = np.where(lower, root_lo * sn / cn, root_lo * cn / (k_prime * sn))
        slope = np.where(lower, root_lo * dn / cn**2, root_lo * dn / (k_prime * sn**2))
    return QuadratureRule(nodes=nodes, weights=slope * (period / n))
