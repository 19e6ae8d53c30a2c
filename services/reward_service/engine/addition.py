"""Per-sample credit with no replaced row: the FD change of adding one sample to the pool.

A replace-one credit ``FD_0 - FD(P - x_i + y)`` equals, to first order, ``(g(x_i) - g(y)) / N``
with ``g`` a row's influence on the FD: the replaced row adds an offset as large as the
differences between samples, so ranks, replicas or calls that replace different rows give one
sample different credits. Adding the sample instead,

    credit(y) = FD(P) - FD(P + y),

depends on the sample and the pool version only. For a pool of N rows with mean ``mu`` and
covariance ``S`` (ddof 1), and ``v = y - mu``, the pool with ``y`` has

    mu' = mu + rho v,   S' = c S + rho v v^T,   c = (N - 1) / N,   rho = 1 / (N + 1),

so ``M' = A S' A = c (M + (rho / c) w w^T)`` with ``w = A v``, and ``tr sqrt(M') = sqrt(c) tr
sqrt(M + (rho / c) w w^T)``: a rank-one change of ``M`` per sample. Relative to a built version
with pending commits (``M = M_b + W_p C_p W_p^T``, :mod:`.replacement`), the pending columns are
shared by every sample of a request and each sample adds one column of its own, so the low-rank
path (:mod:`.lowrank`) pays for the pending part once and a 1 x 1 Schur complement per sample and
node. Both paths return rewards relative to the built version, ``FD_built - FD'``, as
:mod:`.replacement` does, so that the engine certifies and falls back the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .linalg import trace_sqrt_psd
from .lowrank import LowRankUpdate, QuadratureSettings, trace_sqrt_change
from .pending import PendingFactor
from .replacement import Replacement
from .versions import Built, TargetTerms

__all__ = ["Addition", "exact_additions", "factored_additions", "lowrank_additions"]

_EXACT_BLOCK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Addition:
    """B samples each added on its own to the head pool, relative to a built version.

    ``pending``: the head relative to the built version (its removed and added rows and mean
    shift, shared by every sample); ``samples``: (B, d) centred at the head's mean, ``v``;
    ``mean_change`` and ``trace_change`` (B,): the FD's mean and trace terms of the pool with
    the sample less the built pool's, in closed form; ``scale`` ``c`` and ``weight`` ``rho /
    c`` as above; ``root_trace``: ``tr sqrt(M_b)``.
    """

    pending: Replacement
    samples: torch.Tensor
    mean_change: torch.Tensor
    trace_change: torch.Tensor
    scale: float
    weight: float
    root_trace: float

    @classmethod
    def of(
        cls,
        built: Built,
        originals: torch.Tensor,
        current: torch.Tensor,
        samples: torch.Tensor,
        target: TargetTerms,
    ) -> Addition:
        """``samples`` (B, d) added to the head that differs from ``built`` by the rows
        ``originals`` (P, d) replaced by ``current`` (P, d)."""
        n = built.n
        nothing = samples[:0].unsqueeze(0)
        pending = Replacement.of(built, originals.unsqueeze(0), current, nothing, target)
        head_mean = built.mean + pending.delta[0]
        centred = samples - head_mean
        scale = (n - 1) / n
        share = 1.0 / (n + 1)
        shift = pending.delta + share * centred  # mu' - mu_b, (B, d)
        mean_change = (shift * (2.0 * (built.mean - target.mean) + shift)).sum(-1)
        # tr S' - tr S_b = c tr S_h + rho |v|^2 - tr S_b, without forming c tr S_b - tr S_b.
        trace_change = (
            scale * pending.trace_change[0] - built.trace_cov / n + share * centred.square().sum(-1)
        )
        root_trace = float(built.eigenvalues.clamp_min(0.0).sqrt().sum())
        return cls(pending, centred, mean_change, trace_change, scale, share / scale, root_trace)

    @property
    def trusted(self) -> bool:
        """Whether the pending change keeps its digits relative to the built version (adding
        a row cannot cancel the pool's scatter, so only the pending part can lose them)."""
        return bool(self.pending.trusted.all())

    def rewards(self, built: Built, root_changes: torch.Tensor) -> torch.Tensor:
        """``FD_built - FD'`` from each sample's ``tr sqrt(M_h + (rho / c) w w^T) - tr
        sqrt(M_b)``: the closed-form terms, and ``2 (sqrt(c) (T_b + change) - T_b)`` with
        ``1 - sqrt(c)`` taken as ``(1 / N) / (1 + sqrt(c))`` (no cancellation)."""
        root_scale = math.sqrt(self.scale)
        shrink = (1.0 / built.n) / (1.0 + root_scale)
        cross = 2.0 * (root_scale * root_changes - shrink * self.root_trace)
        return cross - self.mean_change - self.trace_change

    def head_root_change(self, built: Built, head_base_fd: float) -> float:
        """``tr sqrt(M_h) - tr sqrt(M_b)`` from the head's base FD: the FD's three other terms
        of both versions are known in closed form."""
        offset = built.base_fd - head_base_fd
        return 0.5 * float(offset + self.pending.mean_change[0] + self.pending.trace_change[0])

    def head_factor(self, built: Built, factor: PendingFactor) -> PendingFactor:
        """The head's pending factorisation (its rows' columns) completed by its mean-shift
        column: the factorisation of ``M_h - M_b`` that every sample's column is appended to."""
        mean = built.projector @ self.pending.delta[0]
        weight = -built.n / (built.n - 1)
        return factor.extended(mean.unsqueeze(1), mean.new_full((1,), weight))

    def select(self, chosen: torch.Tensor) -> Addition:
        """The terms of the samples ``chosen`` (indices)."""
        return Addition(
            self.pending,
            self.samples[chosen],
            self.mean_change[chosen],
            self.trace_change[chosen],
            self.scale,
            self.weight,
            self.root_trace,
        )


def lowrank_additions(
    built: Built, terms: Addition, settings: QuadratureSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards relative to ``built`` by certified quadrature, and their estimated absolute
    errors (NaN where there is none): the pending columns shared, one column per sample."""
    projector_t = built.projector.T
    pending = terms.pending
    removed = pending.xs[0] @ projector_t  # (P, d)
    added = pending.zs[0] @ projector_t
    shift = pending.delta @ projector_t  # (1, d)
    count = removed.shape[0]
    weight = 1.0 / (built.n - 1)
    dtype, device = projector_t.dtype, projector_t.device
    shared = torch.cat([removed, added, shift]) if count else removed
    shared_weights = torch.cat(
        [
            torch.full((count,), -weight, dtype=dtype, device=device),
            torch.full((count,), weight, dtype=dtype, device=device),
            torch.full((1 if count else 0,), -built.n * weight, dtype=dtype, device=device),
        ]
    )
    own = terms.samples @ projector_t  # (B, d)
    update = LowRankUpdate(
        shared=shared.T.unsqueeze(0),
        own=own.unsqueeze(2),
        shared_weights=shared_weights,
        own_weights=torch.full((1,), terms.weight, dtype=dtype, device=device),
    )
    change = trace_sqrt_change(built.eigenvalues, update, settings)
    rewards = terms.rewards(built, change.change)
    return rewards, 2.0 * math.sqrt(terms.scale) * change.error_estimate


def factored_additions(
    built: Built, factor: PendingFactor, terms: Addition, head_change: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards relative to ``built`` for a head whose change from it is factored in
    ``factor`` (:meth:`Addition.head_factor`; its ``tr sqrt`` change ``head_change``): each
    sample's column appended on its own (:meth:`PendingFactor.single_changes`), so a request
    pays for the pending rows linearly, not quadratically, and nothing for their Gram."""
    own = built.projector @ terms.samples.T  # (d, B)
    change = factor.single_changes(own, terms.weight)
    rewards = terms.rewards(built, head_change + change.change)
    return rewards, 2.0 * math.sqrt(terms.scale) * change.error_estimate


def exact_additions(built: Built, terms: Addition, target: TargetTerms) -> torch.Tensor:
    """Rewards relative to ``built`` from one ``eigvalsh`` of ``M_h + (rho / c) w w^T`` per
    sample."""
    pending = terms.pending
    removed = pending.xs[0] @ target.root
    added = pending.zs[0] @ target.root
    shift = pending.delta @ target.root
    n = built.n
    head = built.spectrum_matrix + (added.T @ added - removed.T @ removed - n * shift.T @ shift) / (
        n - 1
    )
    columns = terms.samples @ target.root  # rows of (A v)^T
    d = head.shape[0]
    block = max(1, _EXACT_BLOCK_BYTES // (d * d * 8))
    roots = []
    for start in range(0, columns.shape[0], block):
        part = columns[start : start + block]
        outer = terms.weight * part.unsqueeze(2) * part.unsqueeze(1)
        roots.append(trace_sqrt_psd(head + outer))
    return terms.rewards(built, torch.cat(roots) - terms.root_trace)
