"""The low-rank path: ``tr sqrt(M + dM) - tr sqrt(M)`` for many groups at once, certified.

In the eigenbasis of ``M = Q diag(lam) Q^T`` a group's update is ``dM = W C W^T`` with ``W = Q^T A
U`` (d x r, ``r = 2K + 1``) and ``C`` diagonal (see :mod:`.reward_engine`). The change of
``tr sqrt`` is the integral of :mod:`.quadrature`; at a node ``t`` its integrand is

    log det(I_r + C P(t)),   P(t) = W^T (diag(lam) + t^2)^-1 W,

the log of ``det(M' + t^2) / det(M + t^2)`` by Sylvester's identity. No inverse of ``C`` or of
``P`` is formed, so nearly parallel or repeated columns (duplicate rows, a group equal to the
rows it replaces) are harmless; the Woodbury form ``(C^-1 + W^T D^-1 W)^-1`` is not.

The columns of ``W`` split into a part ``a`` shared by all groups of a request (the replaced rows
in ``shared`` mode, and the rows of commits not yet built) and a part ``b`` of each group's own.
``P``'s shared block is computed, and ``I + C_a P_aa`` factored, once per node; each group then
needs only its Schur complement,

    det(I + C P) = det(I + C_a P_aa) det(I + C_b (P_bb - P_ba (I + C_a P_aa)^-1 C_a P_ab)),

so per group and node the cost is O(d a b + a^2 b + b^3) instead of O(d r^2 + r^3): pending
commits folded into a request's groups are paid for once per request, not once per group.

Certification. The quadrature's rate ``rho^n`` holds when every eigenvalue of ``M`` and ``M'``
lies in the interval ``[lo, hi]`` the nodes were built for. ``hi`` is a Weyl bound; ``lo`` is a
margin below ``lambda_min(M)``, verified per group by an inertia count (one extra Gram). Two
midpoint rules, ``n`` and ``n/2`` nodes, then give the error estimate
``|Q_n - Q_{n/2}| rho^{n/2} / (1 - rho^{n/2})``. The caller certifies a group when the estimate
is under its tolerance and recomputes the others exactly; groups whose spectrum leaves the
interval get no estimate (NaN) and so go to the exact path too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .linalg import single_threaded
from .quadrature import convergence_exponent, nodes_needed, sqrt_trace_rule

__all__ = ["LowRankUpdate", "QuadratureSettings", "TraceSqrtChange", "trace_sqrt_change"]


@dataclass(frozen=True)
class QuadratureSettings:
    """Knobs of the certified quadrature.

    ``reward_rtol`` / ``reward_atol``: a group is certified when the estimated error of its
    reward is under ``max(reward_rtol |reward|, reward_atol max(1, FD_0))``; 100x inside the
    accuracy the tests demand of the fast path (1e-6 relative, 1e-9 x max(1, FD_0)).
    ``target_error``: relative accuracy the node count is chosen for (from the convergence rate).
    ``spectrum_margin``: the lower end of the assumed spectrum is ``margin * lambda_min(M)``, so
    that the updated matrix may have eigenvalues somewhat below the current one's.
    ``min_relative_eigenvalue``: below ``lambda_min / lambda_max`` of this, ``M`` is numerically
    singular (eigenvalues at round-off level): the integrand then decays only like ``t`` near
    zero, the rate above does not hold, and nothing is certified.
    ``max_rank_fraction``: groups whose update rank ``2K + 1`` exceeds this fraction of ``d``
    go to the exact path directly: there ``n`` products of d x r x r cost more than one d x d
    eigendecomposition, and the update is no longer low-rank.
    ``max_pending_fraction``: the head's pending commits (rank ``2P + 1``) stay on the
    low-rank path up to this fraction of ``d``. A commit extends their factorisation at a cost
    linear in ``P`` (:mod:`.pending`), so the bound is the factorisation's memory (``S (2P)^2
    / 2`` numbers) and how long commits can outpace a rebuild; rewards still go to the
    rebuild past ``max_rank_fraction``.
    ``max_nodes``: cap on ``n``; ``memory_bytes``: budget for one block of node evaluations.
    """

    reward_rtol: float = 1e-8
    reward_atol: float = 1e-11
    target_error: float = 1e-10
    spectrum_margin: float = 0.25
    min_relative_eigenvalue: float = 1e-11
    max_rank_fraction: float = 0.25
    max_pending_fraction: float = 0.5
    max_nodes: int = 256
    memory_bytes: int = 256 * 2**20

    def singular(self, eigenvalues: torch.Tensor) -> bool:
        """Whether ``M`` of these ascending eigenvalues is numerically singular for the low-rank
        path (``min_relative_eigenvalue``); a zero ``M`` is."""
        lam_max, lam_min = float(eigenvalues[-1]), float(eigenvalues[0])
        return lam_max <= 0.0 or lam_min <= self.min_relative_eigenvalue * lam_max


@dataclass(frozen=True)
class LowRankUpdate:
    """``dM = W diag(c) W^T`` per group, in ``M``'s eigenbasis, with ``W = [shared, own]``.

    ``shared``: (1 or G, d, a) columns common to all groups (or one set per group);
    ``own``: (G, d, b); ``shared_weights`` (a,) and ``own_weights`` (b,) the diagonal of ``C``.
    """

    shared: torch.Tensor
    own: torch.Tensor
    shared_weights: torch.Tensor
    own_weights: torch.Tensor

    @property
    def groups(self) -> int:
        return int(self.own.shape[0])

    def part(self, groups: slice) -> LowRankUpdate:
        """The update of the groups ``groups`` (a slice)."""
        shared = self.shared if self.shared.shape[0] == 1 else self.shared[groups]
        return LowRankUpdate(shared, self.own[groups], self.shared_weights, self.own_weights)

    @property
    def weights(self) -> torch.Tensor:
        """The diagonal of ``C`` in column order ``[shared, own]``; no entry may be zero."""
        return torch.cat([self.shared_weights, self.own_weights])


@dataclass(frozen=True)
class TraceSqrtChange:
    """Per group: the change of ``tr sqrt`` and its error estimate (NaN where the problem is
    numerically singular and no estimate exists), and the node count of the finest rule."""

    change: torch.Tensor  # (G,)
    error_estimate: torch.Tensor  # (G,)
    nodes: int


@dataclass(frozen=True)
class _Blocks:
    """``P(s) = W^T (diag(lam) + s)^-1 W`` per shift, by blocks: shared (1 or G, S, a, a),
    cross (G, S, a, b), own (G, S, b, b)."""

    shared: torch.Tensor
    cross: torch.Tensor
    own: torch.Tensor

    def last(self) -> torch.Tensor:
        """The full (G, r, r) matrix at the last shift."""
        groups = self.own.shape[0]
        shared = self.shared[:, -1].expand(groups, -1, -1)
        cross = self.cross[:, -1]
        top = torch.cat([shared, cross], dim=2)
        bottom = torch.cat([cross.transpose(1, 2), self.own[:, -1]], dim=2)
        return torch.cat([top, bottom], dim=1)

    def without_last(self) -> _Blocks:
        return _Blocks(self.shared[:, :-1], self.cross[:, :-1], self.own[:, :-1])


def _weighted_products(
    resolvent: torch.Tensor, left: torch.Tensor, right: torch.Tensor
) -> torch.Tensor:
    """``left^T diag(resolvent[s]) right`` for every set and shift: (sets, S, a, b) from left
    (sets, rows, a), right (sets, rows, b) and resolvent (S, rows).

    One GEMM of the (S, rows) resolvent by the column products ``left_i * right_j`` laid out as
    (rows, sets * a * b): its flops are those of the batched form, but it stays efficient for
    the narrow columns of per-sample credits (b = 2), where batched (b x rows) @ (rows x b)
    products over every shift spent their time writing scaled copies of the columns."""
    sets, rows, a = left.shape
    b = right.shape[2]
    products = left.permute(1, 0, 2).unsqueeze(-1) * right.permute(1, 0, 2).unsqueeze(-2)
    forms = resolvent @ products.reshape(rows, sets * a * b)  # (S, sets * a * b)
    return forms.reshape(resolvent.shape[0], sets, a, b).transpose(0, 1)


def _grams(
    eigenvalues: torch.Tensor, update: LowRankUpdate, shifts: torch.Tensor, memory_bytes: int
) -> _Blocks:
    """``P(s) = W^T (diag(lam) + s)^-1 W`` for every group and shift, by blocks.

    Taken in slices of the d rows so that the column products stay within ``memory_bytes``;
    the shared block is computed once when the shared columns are common to all groups."""
    shared, own = update.shared, update.own
    groups, d, own_rank = own.shape
    sets, shared_rank = shared.shape[0], shared.shape[2]
    count = shifts.shape[0]
    resolvent = 1.0 / (eigenvalues.unsqueeze(0) + shifts.unsqueeze(1))  # (S, d)
    dtype, device = own.dtype, own.device
    shared_block = torch.zeros(sets, count, shared_rank, shared_rank, dtype=dtype, device=device)
    cross = torch.zeros(groups, count, shared_rank, own_rank, dtype=dtype, device=device)
    own_block = torch.zeros(groups, count, own_rank, own_rank, dtype=dtype, device=device)
    per_row = (
        groups * own_rank * (own_rank + shared_rank) + sets * shared_rank * shared_rank
    ) * own.element_size()
    rows = max(1, min(d, memory_bytes // max(1, per_row)))
    for start in range(0, d, rows):
        part = slice(start, start + rows)
        weights = resolvent[:, part]
        shared_rows = shared[:, part].expand(groups, -1, -1) if sets < groups else shared[:, part]
        own_block += _weighted_products(weights, own[:, part], own[:, part])
        cross += _weighted_products(weights, shared_rows, own[:, part])
        shared_block += _weighted_products(weights, shared[:, part], shared[:, part])
    # Round-off makes the blocks symmetric only approximately; the determinants want them exact.
    return _Blocks(
        0.5 * (shared_block + shared_block.transpose(-1, -2)),
        cross,
        0.5 * (own_block + own_block.transpose(-1, -2)),
    )


def _log_det_terms(
    blocks: _Blocks, shared_weights: torch.Tensor, own_weights: torch.Tensor
) -> torch.Tensor:
    """``log det(I + C P)`` for every group and node, (G, n), by the Schur complement of the
    shared block. NaN where a determinant comes out non-positive."""
    dtype, device = own_weights.dtype, own_weights.device
    groups = blocks.own.shape[0]
    leading = torch.eye(shared_weights.shape[0], dtype=dtype, device=device) + (
        shared_weights.unsqueeze(-1) * blocks.shared
    )
    factors, pivots = torch.linalg.lu_factor(leading)
    # det = prod diag(U) times the sign of the row permutation (LAPACK pivots are 1-based).
    diagonal = factors.diagonal(dim1=-2, dim2=-1)
    order = torch.arange(1, pivots.shape[-1] + 1, dtype=pivots.dtype, device=pivots.device)
    swaps = (pivots != order).sum(-1)
    lead_sign = torch.sign(diagonal).prod(-1) * (1 - 2 * (swaps % 2))
    lead_log = diagonal.abs().log().sum(-1)
    solved = torch.linalg.lu_solve(
        factors.expand(groups, -1, -1, -1),
        pivots.expand(groups, -1, -1),
        shared_weights.unsqueeze(-1) * blocks.cross,
    )
    complement = blocks.own - blocks.cross.transpose(-1, -2) @ solved
    identity = torch.eye(own_weights.shape[0], dtype=dtype, device=device)
    schur = identity + own_weights.unsqueeze(-1) * complement
    sign, log_abs = torch.linalg.slogdet(schur)
    # det(I + C P) = det(M' + t^2) / det(M + t^2) > 0, and so is the shared block's, a ratio of
    # two such determinants: a non-positive value is round-off on a numerically singular
    # problem, flagged rather than clipped.
    valid = (sign > 0) & (lead_sign > 0)
    return torch.where(valid, log_abs + lead_log, torch.nan)


def _spectrum_above(gram_at_minus_lo: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per group, whether ``M' = M + W C W^T`` has no eigenvalue below ``lo`` (< lambda_min(M)),
    given ``P(-lo) = W^T (M - lo)^-1 W``.

    By Haynsworth's inertia additivity on ``[[M - lo, W], [W^T, -C^-1]]``, the number of
    eigenvalues of ``M' - lo`` below zero is ``pos(C^-1 + W^T (M - lo)^-1 W) - pos(C^-1)``: one
    more shift and an r x r eigenvalue count, instead of the d x d eigenproblem."""
    inertia: torch.Tensor = torch.linalg.eigvalsh(torch.diag(1.0 / weights) + gram_at_minus_lo)
    return (inertia > 0).sum(-1) == (weights > 0).sum()


def trace_sqrt_change(
    eigenvalues: torch.Tensor, update: LowRankUpdate, settings: QuadratureSettings
) -> TraceSqrtChange:
    """``tr sqrt(M + dM) - tr sqrt(M)`` per group, with ``M = diag(eigenvalues)`` (ascending,
    unclipped) and ``update`` in that basis."""
    groups = update.groups
    device = eigenvalues.device
    if settings.singular(eigenvalues):
        nan = torch.full((groups,), torch.nan, dtype=torch.float64, device=device)
        return TraceSqrtChange(change=nan, error_estimate=nan, nodes=0)
    # Above, Weyl: the updated spectrum lies below lam_max + sum_j max(c_j, 0) |w_j|^2.
    # Below, the margin, verified per group by the inertia count.
    added = (update.own.square().sum(1) * update.own_weights.clamp_min(0.0)).sum(-1)
    added = added + (update.shared.square().sum(1) * update.shared_weights.clamp_min(0.0)).sum(-1)
    hi = float(eigenvalues[-1]) + float(added.max())
    lo = settings.spectrum_margin * float(eigenvalues[0])
    needed = nodes_needed(hi / lo, settings.target_error)
    n = max(8, min(settings.max_nodes, 2 * math.ceil(needed / 2)))
    fine_rule, coarse_rule = sqrt_trace_rule(lo, hi, n), sqrt_trace_rule(lo, hi, n // 2)
    nodes = torch.as_tensor(np.concatenate([fine_rule.nodes, coarse_rule.nodes]), device=device)
    shifts = torch.cat([nodes.square(), torch.tensor([-lo], dtype=nodes.dtype, device=device)])
    weights = update.weights
    rank = weights.shape[0]
    per_group = max(1, shifts.shape[0] * rank * rank * weights.element_size())
    chunk = max(1, settings.memory_bytes // per_group)
    terms, above = [], []
    for start in range(0, groups, chunk):
        part = update.part(slice(start, start + chunk))
        blocks = _grams(eigenvalues, part, shifts, settings.memory_bytes)
        with single_threaded():  # batches of r x r factorisations
            terms.append(
                _log_det_terms(blocks.without_last(), update.shared_weights, update.own_weights)
            )
            above.append(_spectrum_above(blocks.last(), weights))
    log_dets = torch.cat(terms)
    fine = log_dets[:, :n] @ torch.as_tensor(fine_rule.weights, device=device) / math.pi
    coarse = log_dets[:, n:] @ torch.as_tensor(coarse_rule.weights, device=device) / math.pi
    # With every singularity inside [lo, hi] the error falls like rate^n, so the fine rule's
    # error is the coarse rule's (~ their difference) times rate^(n/2).
    decay = math.exp(-convergence_exponent(hi / lo) * (n // 2))
    error = (fine - coarse).abs() * decay / (1.0 - decay)
    valid = torch.isfinite(error) & torch.cat(above)
    return TraceSqrtChange(
        change=fine, error_estimate=torch.where(valid, error, torch.nan), nodes=n
    )
