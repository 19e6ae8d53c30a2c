"""The head's pending change as a factorisation that commits extend instead of redoing.

Between builds the head differs from the built version by removing the built rows at the
touched positions (weight ``-1/(N-1)``) and adding the rows held there now (``+1/(N-1)``),
centred at the built mean and projected into ``M``'s eigenbasis: columns ``V`` (d x a) and
weights ``c``. At a quadrature shift ``s`` (:mod:`.lowrank`) the integrand is
``log det(I + C G(s))``, ``G(s) = V^T (diag(lam) + s)^-1 V``, and

    det(I + C G) = det(C) det(K),   K(s) = C^-1 + G(s) = L D L^T,

factored without pivoting in the order the columns came. Each prefix of that order removes
rows the pool holds or adds rows, so it is the scatter of some rows about the built mean:
positive semi-definite. For ``s > 0`` the pivot of column ``i`` is therefore
``c_i^-1 (1 + c_i v_i^T N_<i(s)^-1 v_i)`` with ``N_<i(s) = M_<i + s`` positive definite: of
the sign of ``c_i``, and ``|c_i|^-1`` times one row's determinant ratio, whose logs the log
determinant sums (as ``log1p`` of the part beyond 1, which keeps the digits of the far nodes,
where that part is tiny). No pivoting is needed for stability; the signs are checked all the
same, and a wrong one leaves the head uncertified.

A commit of ``k`` rows at positions not pending yet appends ``2k`` columns: a bordered
``L D L^T`` (one forward substitution through ``L``'s rows, block by block), ``O(S (d a k +
a^2 k))`` for ``S`` shifts, against ``O(S d a^2)`` for factoring the pending block again. The
mean shift column (weight ``-N/(N-1)``), which every commit moves, is eliminated with the new
block in the same pass and never stored.

The shifts are fixed per factorisation (the nodes of the interval ``[lo, hi]`` chosen when it
started, with room above): certification needs the updated spectrum inside it, checked by Weyl
above and, below, by the inertia of ``K(-lo)`` from the same factorisation (Haynsworth: ``M'``
has no eigenvalue below ``lo`` iff ``K(-lo)`` has as many positive pivots as ``C`` has positive
weights). A head whose spectrum outgrows ``hi`` starts a new factorisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .lowrank import QuadratureSettings, TraceSqrtChange
from .quadrature import QuadratureRule, convergence_exponent, nodes_needed, sqrt_trace_rule

__all__ = ["PendingFactor"]

_HEADROOM = 2.0
"""The interval's top is this multiple of the Weyl bound when a factorisation starts, so the
spectrum can grow over many commits before the nodes change (doubling ``hi`` costs
``log 2 / (log(hi / lo) + 6)`` more nodes, a few per cent)."""

_BLOCK = 64
"""Most columns eliminated as one block: a bordered step per block, a loop inside it."""

_MIN_PIVOT_RATIO = 1e-8
"""At ``s = -lo`` a prefix may pass near an eigenvalue ``lo``; a pivot ratio ``c_i D_i``
smaller than this leaves its sign, and so the inertia, to rounding: not certified."""


@dataclass(frozen=True)
class _Block:
    """Consecutive columns of the factorisation: the columns (d, b), their weights, their
    rows of ``L`` (S, b, a + b; ``a`` columns before them), the inverse of the block's
    diagonal part of ``L`` (S, b, b), pivots ``D`` and ``log(c D)`` (S, b)."""

    columns: torch.Tensor
    weights: torch.Tensor
    lower: torch.Tensor
    diagonal_inverse: torch.Tensor
    pivots: torch.Tensor
    logs: torch.Tensor

    @property
    def width(self) -> int:
        return int(self.weights.shape[0])

    def merged(self, after: _Block) -> _Block:
        """This block and the one ``after`` it as one block (fewer, larger steps in a forward
        substitution): ``[[L_1, 0], [L_21, L_2]]^-1 = [[L_1^-1, 0], [-L_2^-1 L_21 L_1^-1,
        L_2^-1]]`` for the diagonal part."""
        width, start = self.width, self.lower.shape[2] - self.width
        padded = torch.nn.functional.pad(self.lower, (0, after.width))
        coupling = after.lower[:, :, start : start + width]
        corner = -(after.diagonal_inverse @ coupling @ self.diagonal_inverse)
        top = torch.nn.functional.pad(self.diagonal_inverse, (0, after.width))
        bottom = torch.cat([corner, after.diagonal_inverse], dim=2)
        return _Block(
            torch.cat([self.columns, after.columns], dim=1),
            torch.cat([self.weights, after.weights]),
            torch.cat([padded, after.lower], dim=1),
            torch.cat([top, bottom], dim=1),
            torch.cat([self.pivots, after.pivots], dim=1),
            torch.cat([self.logs, after.logs], dim=1),
        )


@dataclass(frozen=True)
class _Tally:
    """What the certificate needs of the columns so far, summed block by block."""

    log_total: torch.Tensor | None = None  # (S,): sum of log(c D)
    positive_mass: float = 0.0  # sum of c_i |v_i|^2 over positive weights: Weyl's term
    signs_at_lo: int = 0  # positive pivots at -lo minus positive weights
    smallest_at_lo: float = math.inf  # smallest |c D| at -lo

    def plus(self, block: _Block) -> _Tally:
        logs = block.logs.sum(1)
        at_lo = block.pivots[-1]
        positive = block.weights.clamp_min(0.0)
        return _Tally(
            logs if self.log_total is None else self.log_total + logs,
            self.positive_mass + float((block.columns.square().sum(0) * positive).sum()),
            self.signs_at_lo + int((at_lo > 0).sum()) - int((block.weights > 0).sum()),
            min(self.smallest_at_lo, float((at_lo * block.weights).abs().min())),
        )


@dataclass(frozen=True)
class PendingFactor:
    """``L D L^T`` of ``K(s)`` for the pending columns at fixed shifts (see the module)."""

    fine: QuadratureRule
    coarse: QuadratureRule
    lo: float
    hi: float
    top: float  # lambda_max(M)
    resolvent: torch.Tensor  # (S, d): 1 / (lam + s), shifts = fine^2, coarse^2, -lo
    blocks: tuple[_Block, ...] = ()
    stacked: torch.Tensor | None = None  # (d, a): every block's columns side by side
    tally: _Tally = field(default_factory=lambda: _Tally())

    @classmethod
    def start(
        cls, eigenvalues: torch.Tensor, spread: float, settings: QuadratureSettings
    ) -> PendingFactor | None:
        """An empty factor for ``M = diag(eigenvalues)`` whose interval leaves room for updates
        that add ``spread`` to the top of the spectrum. None when ``M`` is numerically
        singular (no rate holds; see :mod:`.lowrank`)."""
        if settings.singular(eigenvalues):
            return None
        lam_max, lam_min = float(eigenvalues[-1]), float(eigenvalues[0])
        lo = settings.spectrum_margin * lam_min
        hi = _HEADROOM * (lam_max + spread)
        needed = nodes_needed(hi / lo, settings.target_error)
        n = max(8, min(settings.max_nodes, 2 * math.ceil(needed / 2)))
        fine, coarse = sqrt_trace_rule(lo, hi, n), sqrt_trace_rule(lo, hi, n // 2)
        nodes = torch.as_tensor(
            np.concatenate([fine.nodes, coarse.nodes]), device=eigenvalues.device
        )
        shifts = torch.cat([nodes.square(), nodes.new_tensor([-lo])])
        resolvent = 1.0 / (eigenvalues.unsqueeze(0) + shifts.unsqueeze(1))
        return cls(fine, coarse, lo, hi, lam_max, resolvent)

    @property
    def size(self) -> int:
        return sum(block.width for block in self.blocks)

    @property
    def spectrum(self) -> tuple[float, float]:
        """Where the spectrum of a version certified from these columns lies
        (:meth:`extended_changes`): above ``lo`` by the inertia count, below ``lambda_max(M)``
        plus the positive weights' mass by Weyl."""
        return self.lo, self.top + self.tally.positive_mass

    def contains(self, tally: _Tally | None = None) -> bool:
        """Whether the top of the updated spectrum (Weyl) stays inside the interval."""
        return self.top + (tally or self.tally).positive_mass <= self.hi

    def _forward(self, scaled: torch.Tensor) -> torch.Tensor:
        """``L^-1 G_ab`` for new columns, given ``diag(1 / (lam + s)) V_b`` (S, d, m): ``G_ab``
        for every shift in one product, then one pass through ``L``'s rows, block by block."""
        assert self.stacked is not None
        shifts, d, count = scaled.shape
        size = self.stacked.shape[1]
        flat = scaled.permute(1, 0, 2).reshape(d, shifts * count)
        cross = (self.stacked.T @ flat).reshape(size, shifts, count).permute(1, 0, 2)
        solved = scaled.new_empty(shifts, size, count)
        start = 0
        for block in self.blocks:
            end = start + block.width
            rhs = cross[:, start:end]
            if start:
                rhs = rhs - block.lower[:, :, :start] @ solved[:, :start]
            solved[:, start:end] = block.diagonal_inverse @ rhs
            start = end
        return solved

    def _eliminated(self, columns: torch.Tensor, weights: torch.Tensor) -> _Block:
        """``columns`` (d, b) of ``weights`` (b,) eliminated after this factor's columns:
        ``F = L^-1 G_ab``, the Schur complement ``C_b^-1 + G_bb - F^T D^-1 F``, and its own
        ``L D L^T`` column by column."""
        size = self.size
        scaled = self.resolvent.unsqueeze(-1) * columns.unsqueeze(0)  # (S, d, b)
        excess = columns.T.unsqueeze(0) @ scaled  # G_bb, (S, b, b)
        shifts, count = self.resolvent.shape[0], columns.shape[1]
        dtype, device = columns.dtype, columns.device
        lower = torch.zeros(shifts, count, size + count, dtype=dtype, device=device)
        if size:
            solved = self._forward(scaled)
            pivots_before = torch.cat([block.pivots for block in self.blocks], dim=1)
            coupling = solved / pivots_before.unsqueeze(-1)  # L_ba^T
            excess = excess - solved.transpose(1, 2) @ coupling
            lower[:, :, :size] = coupling.transpose(1, 2)
        excess = 0.5 * (excess + excess.transpose(1, 2))
        own = torch.zeros(shifts, count, count, dtype=dtype, device=device)
        pivots = torch.empty(shifts, count, dtype=dtype, device=device)
        ratios = torch.empty_like(pivots)  # c_j D_j - 1 = c_j e_j, kept apart from the 1
        for j in range(count):
            part = excess[:, j, j] * weights[j]
            ratios[:, j] = part
            pivots[:, j] = (1.0 + part) / weights[j]
            own[:, j, j] = 1.0
            if j + 1 < count:
                column = excess[:, j + 1 :, j] / pivots[:, j].unsqueeze(-1)
                own[:, j + 1 :, j] = column
                excess[:, j + 1 :, j + 1 :] -= column.unsqueeze(-1) * excess[
                    :, j, j + 1 :
                ].unsqueeze(1)
        lower[:, :, size:] = own
        identity = torch.eye(count, dtype=dtype, device=device)
        diagonal_inverse = torch.linalg.solve_triangular(
            own, identity, upper=False, unitriangular=True
        )
        logs = torch.where(ratios > -1.0, torch.log1p(ratios), torch.nan)
        return _Block(columns, weights, lower, diagonal_inverse, pivots, logs)

    def _with(self, block: _Block) -> PendingFactor:
        """This factor with ``block`` appended (merged into the last block while both together
        stay within a block's width, so that a forward substitution takes few steps)."""
        blocks, tally = self.blocks, self.tally.plus(block)
        stacked = block.columns
        if self.stacked is not None:
            stacked = torch.cat([self.stacked, block.columns], dim=1)
        if blocks and blocks[-1].width + block.width <= _BLOCK:
            blocks, block = blocks[:-1], blocks[-1].merged(block)
        return replace(self, blocks=(*blocks, block), stacked=stacked, tally=tally)

    def extended(self, columns: torch.Tensor, weights: torch.Tensor) -> PendingFactor:
        """This factor with ``columns`` (d, b) of ``weights`` (b,) appended."""
        factor = self
        for start in range(0, columns.shape[1], _BLOCK):
            block = slice(start, start + _BLOCK)
            factor = factor._with(factor._eliminated(columns[:, block], weights[block]))
        return factor

    def extended_changes(
        self,
        columns: torch.Tensor,
        weights: torch.Tensor,
        ends: list[int],
        means: torch.Tensor,
        mean_weight: float,
    ) -> tuple[PendingFactor, TraceSqrtChange]:
        """:meth:`extended` by ``columns`` (d, c) of ``weights`` (c,), and for each version
        ``j`` that its first ``ends[j]`` columns make, ``tr sqrt(M_j) - tr sqrt(M)`` with its
        mean shift column ``means[:, j]`` (weight ``mean_weight``) on top; error estimates as
        in :mod:`.lowrank`, NaN where the spectrum leaves the interval or a pivot has the
        wrong sign.

        The mean columns are never stored: each is eliminated after its version's prefix.
        ``L`` is lower triangular, so the first ``k`` entries of ``L^-1 G_au`` for the whole
        factorisation are those for its first ``k`` columns: one forward substitution of every
        mean column serves every version, and each Schur complement
        ``C_u^-1 + G_uu - F^T D^-1 F`` sums its prefix of the terms ``F_i^2 / D_i``."""
        factor, fresh = self, []
        for start in range(0, columns.shape[1], _BLOCK):
            block = slice(start, start + _BLOCK)
            fresh.append(factor._eliminated(columns[:, block], weights[block]))
            factor = factor._with(fresh[-1])
        scaled = self.resolvent.unsqueeze(-1) * means.unsqueeze(0)  # (S, d, m)
        own = (means.unsqueeze(0) * scaled).sum(1)  # G_uu, (S, m)
        solved = factor._forward(scaled)  # (S, a + c, m)
        pivots = torch.cat([block.pivots for block in factor.blocks], dim=1)
        folded = (solved.square() / pivots.unsqueeze(-1)).cumsum(1)
        prefix = [self.size + end - 1 for end in ends]
        excess = own - folded[:, prefix, torch.arange(len(ends), device=columns.device)]
        ratios = mean_weight * excess  # c D - 1 of each mean column, (S, m)
        logs = torch.where(ratios > -1.0, torch.log1p(ratios), torch.nan)
        at_lo = (1.0 + ratios[-1]) / mean_weight

        # The tallies of every prefix of the new columns, then each version's mean column.
        new_weights = torch.cat([block.weights for block in fresh])
        new_at_lo = torch.cat([block.pivots[-1] for block in fresh])
        last = torch.as_tensor([end - 1 for end in ends], device=columns.device)
        log_totals = torch.cat([block.logs for block in fresh], dim=1).cumsum(1)[:, last] + logs
        if self.tally.log_total is not None:
            log_totals = log_totals + self.tally.log_total.unsqueeze(1)
        masses = (columns.square().sum(0) * new_weights.clamp_min(0.0)).cumsum(0)[last]
        signs = ((new_at_lo > 0).long() - (new_weights > 0).long()).cumsum(0)[last]
        signs = signs + (at_lo > 0).long() - int(mean_weight > 0) + self.tally.signs_at_lo
        smallest = torch.minimum(
            (new_at_lo * new_weights).abs().cummin(0).values[last], (at_lo * mean_weight).abs()
        ).clamp_max(self.tally.smallest_at_lo)

        n = self.fine.nodes.shape[0]
        device = columns.device
        fine = log_totals[:n].T @ torch.as_tensor(self.fine.weights, device=device) / math.pi
        coarse_logs = log_totals[n:-1].T
        coarse = coarse_logs @ torch.as_tensor(self.coarse.weights, device=device) / math.pi
        decay = math.exp(-convergence_exponent(self.hi / self.lo) * (n // 2))
        error = (fine - coarse).abs() * decay / (1.0 - decay)
        # M_j has no eigenvalue below lo (inertia of K(-lo)), none of the signs is rounding's,
        # and the top of its spectrum is below hi.
        certified = (
            (signs == 0)
            & (smallest >= _MIN_PIVOT_RATIO)
            & (self.top + self.tally.positive_mass + masses <= self.hi)
            & torch.isfinite(error)
        )
        error = torch.where(certified, error, torch.nan)
        return factor, TraceSqrtChange(change=fine, error_estimate=error, nodes=n)

    def single_changes(self, columns: torch.Tensor, weight: float) -> TraceSqrtChange:
        """For each of ``columns`` (d, m) on its own, appended after this factor's columns with
        ``weight`` (> 0): ``tr sqrt(M_F + weight v v^T) - tr sqrt(M_F)``, where ``M_F`` is the
        matrix these columns make; error estimates as in :meth:`extended_changes`, NaN where
        they cannot be certified. Nothing is stored: each column is one Schur complement
        ``1/weight + G_vv - F^T D^-1 F`` per shift, ``F = L^-1 G_av`` (one product of the
        stacked columns for every shift and column, then a forward substitution), so a request
        pays ``O(S d a m)`` for the ``a`` columns factored once, not ``O(S d a^2)``. A positive
        weight adds a positive semi-definite term: the spectrum stays above ``M_F``'s, and only
        its top (Weyl) can leave the interval."""
        scaled = self.resolvent.unsqueeze(-1) * columns.unsqueeze(0)  # (S, d, m)
        excess = (columns.unsqueeze(0) * scaled).sum(1)  # G_vv, (S, m)
        if self.size:
            solved = self._forward(scaled)  # (S, a, m)
            pivots = torch.cat([block.pivots for block in self.blocks], dim=1)
            excess = excess - (solved.square() / pivots.unsqueeze(-1)).sum(1)
        ratios = weight * excess  # c D - 1 of each column, (S, m)
        logs = torch.where(ratios > -1.0, torch.log1p(ratios), torch.nan)
        n = self.fine.nodes.shape[0]
        device = columns.device
        fine = logs[:n].T @ torch.as_tensor(self.fine.weights, device=device) / math.pi
        coarse = logs[n:-1].T @ torch.as_tensor(self.coarse.weights, device=device) / math.pi
        decay = math.exp(-convergence_exponent(self.hi / self.lo) * (n // 2))
        error = (fine - coarse).abs() * decay / (1.0 - decay)
        mass = weight * columns.square().sum(0)
        certified = (
            (self.tally.signs_at_lo == 0)
            & (self.tally.smallest_at_lo >= _MIN_PIVOT_RATIO)
            & (self.top + self.tally.positive_mass + mass <= self.hi)
            & (ratios[-1] > -1.0)
            & torch.isfinite(error)
        )
        error = torch.where(certified, error, torch.nan)
        return TraceSqrtChange(change=fine, error_estimate=error, nodes=n)
