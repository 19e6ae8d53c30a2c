"""The low-rank path: ``tr sqrt(M + dM) - tr sqrt(M)`` for many groups at once, certified.

A group's update of ``M = A S A`` has rank ``r <= 2K + 2``. In the eigenbasis of ``M`` it is
``W C W^T`` (``W = Q^T A U``, see :mod:`.reward_engine`). It is first *compressed*: thin QR
``W = Q_w R``, eigendecomposition of the small core ``R C R^T = V diag(c) V^T``, giving
``dM = W~ diag(c) W~^T`` with orthonormal ``W~ = Q_w V``. Nearly parallel columns of ``U`` (the
pool mean before and after) then cost nothing, and no inverse of ``C`` is ever formed.

The change of ``tr sqrt`` is the integral of :mod:`.quadrature`, evaluated at every node through
``log det(I + diag(c) P)``, ``P = W~^T (diag(lam) + t^2)^-1 W~``. ``P`` is positive definite, so
with ``P = L L^T`` the matrix ``diag(c) P`` is similar to the symmetric ``L^T diag(c) L``; the log
determinant is then ``sum log1p(mu_i)`` over its eigenvalues, which keeps full relative accuracy at
large ``t`` where ``I + diag(c) P`` is the identity plus round-off-sized terms.

Certification: three midpoint rules with ``n``, ``n/2`` and ``n/4`` nodes. Their differences
``d1 = |Q_{n/2} - Q_{n/4}|`` and ``d2 = |Q_n - Q_{n/2}|`` measure the observed geometric rate;
the error of ``Q_n`` is estimated as ``d2 min(1, d2/d1)^2`` -- just ``d2``, the disagreement of the
two finer rules, when they do not converge. The caller certifies a group when that estimate is
under its tolerance and recomputes the others exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .quadrature import nodes_needed, sqrt_trace_rule

__all__ = [
    "LowRankUpdate",
    "QuadratureSettings",
    "TraceSqrtChange",
    "compress",
    "trace_sqrt_change",
]


@dataclass(frozen=True)
class QuadratureSettings:
    """Knobs of the certified quadrature.

    ``target_error``: relative accuracy the node count is chosen for (from the convergence rate).
    ``spectrum_margin``: the lower end of the assumed spectrum is ``margin * lambda_min(M)``, so
    that the updated matrix may have eigenvalues somewhat below the current one's.
    ``min_relative_eigenvalue``: below ``lambda_min / lambda_max`` of this, ``M`` is numerically
    singular (eigenvalues at round-off level): the integrand then decays only like ``t`` near
    zero, the rate above does not hold, and nothing is certified.
    ``max_nodes``: cap on ``n``; ``memory_bytes``: budget for one block of node evaluations.
    ``reward_rtol`` / ``reward_atol``: a group is certified when the estimated error of its
    reward is under ``max(reward_rtol |reward|, reward_atol max(1, FD_0))``; 100x inside the
    accuracy the tests demand of the fast path (1e-6 relative, 1e-9 x max(1, FD_0)).
    """

    reward_rtol: float = 1e-8
    reward_atol: float = 1e-11
    target_error: float = 1e-10
    spectrum_margin: float = 0.25
    min_relative_eigenvalue: float = 1e-11
    max_nodes: int = 256
    memory_bytes: int = 256 * 2**20


@dataclass(frozen=True)
class LowRankUpdate:
    """``dM = directions diag(weights) directions^T`` per group; directions orthonormal."""

    directions: torch.Tensor  # (G, d, r)
    weights: torch.Tensor  # (G, r)


@dataclass(frozen=True)
class TraceSqrtChange:
    """Per group: the change of ``tr sqrt`` and its error estimate (NaN where the problem is
    numerically singular and no estimate exists), and the node count of the finest rule."""

    change: torch.Tensor  # (G,)
    error_estimate: torch.Tensor  # (G,)
    nodes: int


def compress(basis: torch.Tensor, core: torch.Tensor) -> LowRankUpdate:
    """Rewrite ``basis @ core @ basis^T`` (basis (G, d, r), core (G, r, r) symmetric) with
    orthonormal directions: thin QR of the basis, then the eigendecomposition of the small
    ``R core R^T``. Directions whose weight is round-off stay in, with a weight of zero."""
    q, r = torch.linalg.qr(basis, mode="reduced")
    small = r @ core @ r.transpose(-1, -2)
    weights, vectors = torch.linalg.eigh(0.5 * (small + small.transpose(-1, -2)))
    # Exact rank deficiencies (duplicate rows, a group equal to the rows it replaces) show up as
    # weights of relative size ~1e-16; zeroing them keeps noise out of the integrand.
    scale = weights.abs().amax(-1, keepdim=True)
    weights = torch.where(
        weights.abs() <= 64 * torch.finfo(weights.dtype).eps * scale, 0.0, weights
    )
    return LowRankUpdate(directions=q @ vectors, weights=weights)


def _log_det_terms(
    eigenvalues: torch.Tensor, update: LowRankUpdate, nodes: torch.Tensor, memory_bytes: int
) -> torch.Tensor:
    """``log det(I + diag(c) W^T (diag(lam) + t^2)^-1 W)`` for every group and node: (G, n).
    Non-finite where the Cholesky factorisation fails (``P`` not numerically definite)."""
    directions, weights = update.directions, update.weights
    groups, d, rank = directions.shape
    per_node = max(1, groups * d * rank * directions.element_size())
    block = max(1, memory_bytes // per_node)
    transposed = directions.transpose(-1, -2).unsqueeze(1)  # (G, 1, r, d)
    out = []
    for start in range(0, nodes.shape[0], block):
        t = nodes[start : start + block]
        inverse = 1.0 / (eigenvalues.unsqueeze(0) + t.square().unsqueeze(1))  # (n, d)
        scaled = directions.unsqueeze(1) * inverse.unsqueeze(0).unsqueeze(-1)  # (G, n, d, r)
        gram = transposed @ scaled  # (G, n, r, r)
        factor, info = torch.linalg.cholesky_ex(0.5 * (gram + gram.transpose(-1, -2)))
        similar = factor.transpose(-1, -2) @ (weights[:, None, :, None] * factor)
        mu = torch.linalg.eigvalsh(0.5 * (similar + similar.transpose(-1, -2)))
        # I + diag(c) P is similar to (M' + t^2)(M + t^2)^-1, whose eigenvalues are positive;
        # mu <= -1 can only be round-off on a numerically singular problem: flag, don't clip.
        terms = torch.log1p(mu).sum(-1)
        invalid = (info != 0) | (mu <= -1.0).any(-1)
        out.append(torch.where(invalid, torch.nan, terms))
    return torch.cat(out, dim=1)


def trace_sqrt_change(
    eigenvalues: torch.Tensor, update: LowRankUpdate, settings: QuadratureSettings
) -> TraceSqrtChange:
    """``tr sqrt(M + dM) - tr sqrt(M)`` per group, with ``M = diag(eigenvalues)`` (ascending;
    the basis of ``update`` is already ``M``'s eigenbasis)."""
    groups = update.weights.shape[0]
    device = eigenvalues.device
    lam_max = float(eigenvalues[-1])
    lam_min = float(eigenvalues[0])
    if lam_max <= 0.0 or lam_min <= settings.min_relative_eigenvalue * lam_max:
        nan = torch.full((groups,), torch.nan, dtype=torch.float64, device=device)
        return TraceSqrtChange(change=nan, error_estimate=nan, nodes=0)
    # Weyl: the updated spectrum lies below lam_max + max(c); below, allow the margin.
    hi = lam_max + max(float(update.weights.max()), 0.0)
    lo = settings.spectrum_margin * lam_min
    n = min(settings.max_nodes, 4 * math.ceil(nodes_needed(hi / lo, settings.target_error) / 4))
    n = max(n, 8)
    rules = [sqrt_trace_rule(lo, hi, count) for count in (n, n // 2, n // 4)]
    nodes = torch.as_tensor(np.concatenate([rule.nodes for rule in rules]), device=device)
    terms = _log_det_terms(eigenvalues, update, nodes, settings.memory_bytes)
    estimates = []
    offset = 0
    for rule in rules:
        weights = torch.as_tensor(rule.weights, device=device)
        estimates.append(terms[:, offset : offset + len(weights)] @ weights / math.pi)
        offset += len(weights)
    fine, middle, coarse = estimates
    d2 = (fine - middle).abs()
    d1 = (middle - coarse).abs()
    ratio = torch.where(d1 > 0, (d2 / d1).clamp(max=1.0), torch.ones_like(d2))
    error = d2 * ratio.square()
    finite = torch.isfinite(fine) & torch.isfinite(middle) & torch.isfinite(coarse)
    error = torch.where(finite, error, torch.nan)
    return TraceSqrtChange(change=fine, error_estimate=error, nodes=n)
