"""The FD change of replacing pool rows, relative to a built version: exact and low-rank.

Removing rows ``X`` (m x d) from a built pool of N rows with mean ``mu`` and adding ``Y`` (m x d)
gives, with ``x~ = x - mu``, ``y~ = y - mu`` and ``delta = mu' - mu = (sum y~ - sum x~) / N``,

    S' = S + U C U^T,   U = [X~^T, Y~^T, delta],   C = diag(-1_m, +1_m, -N) / (N - 1)

(centring at the pool mean keeps large feature means from cancelling). ``X`` and ``Y`` may share
rows (a row removed and added again cancels exactly in ``S'``), which is how the head's pending
commits and a group's replacement compose into one update. The mean and trace terms of the FD
change in closed form; ``tr sqrt(A S' A)``, ``A = S_r^{1/2}``, is the hard part:

* exact: ``M' = A S A + (A U) C (A U)^T`` and one float64 ``eigvalsh`` per group, O(d^3).
* low-rank: the change of ``tr sqrt`` by certified quadrature in ``M``'s eigenbasis
  (:mod:`.lowrank`), O(n d r^2) per group with ``r = 2m + 1``.

Both return *rewards relative to the built version*, ``FD_built - FD'``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .linalg import frechet_from_terms, trace_sqrt_psd
from .lowrank import LowRankUpdate, QuadratureSettings, trace_sqrt_change
from .versions import Built, TargetTerms

__all__ = ["MAX_CANCELLATION", "Replacement", "exact_rewards", "lowrank_rewards"]

MAX_CANCELLATION = 1e4
"""Largest ratio of the covariance trace the update moves (removed + added + mean shift) to the
trace it leaves, for a result computed from a built version to be trusted: both paths add the
update to quantities of the built pool, so their rounding is ``u`` times the larger side.
Removing rows far larger than what remains (1e18 features pushed out of the ring) exceeds it;
such a version is built from its own statistics instead."""

_EXACT_BLOCK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Replacement:
    """Per group: centred removed and added rows, the mean shift and the closed-form changes of
    the FD's mean and trace terms, and how much of the trace cancels."""

    xs: torch.Tensor  # (1 or G, m, d) removed, centred at the built mean
    zs: torch.Tensor  # (1, p, d) added to every group (pending commits), centred
    ys: torch.Tensor  # (G, m - p, d) added, each group's own, centred
    delta: torch.Tensor  # (G, d) = mu' - mu
    mean_change: torch.Tensor  # |mu' - mu_r|^2 - |mu - mu_r|^2
    trace_change: torch.Tensor  # tr S' - tr S
    cancellation: torch.Tensor  # (tr S + |moved trace|) / tr S'

    @classmethod
    def of(
        cls,
        built: Built,
        removed: torch.Tensor,
        common: torch.Tensor,
        added: torch.Tensor,
        target: TargetTerms,
    ) -> Replacement:
        """Groups that remove ``removed`` (1 or G, m, d) and add ``common`` (p, d) and
        ``added`` (G, m - p, d)."""
        n = built.n
        xs = removed - built.mean
        zs = (common - built.mean).unsqueeze(0)
        ys = added - built.mean
        delta = (zs.sum(1) + ys.sum(1) - xs.sum(1)) / n
        mean_change = (delta * (2.0 * (built.mean - target.mean) + delta)).sum(-1)
        gone = xs.square().sum((1, 2))
        new = zs.square().sum() + ys.square().sum((1, 2))
        shift = n * delta.square().sum(-1)
        trace_change = (new - gone - shift) / (n - 1)
        moved = (new + gone + shift) / (n - 1)
        remaining = built.trace_cov + trace_change
        cancellation = torch.where(
            remaining > 0, (built.trace_cov + moved) / remaining.clamp_min(1e-300), torch.inf
        )
        return cls(xs, zs, ys, delta, mean_change, trace_change, cancellation)

    @property
    def trusted(self) -> torch.Tensor:
        """Per group: whether a result relative to the built version keeps its digits."""
        return self.cancellation <= MAX_CANCELLATION

    def select(self, chosen: torch.Tensor) -> Replacement:
        """The terms of the groups ``chosen`` (indices)."""
        xs = self.xs if self.xs.shape[0] == 1 else self.xs[chosen]
        return Replacement(
            xs,
            self.zs,
            self.ys[chosen],
            self.delta[chosen],
            self.mean_change[chosen],
            self.trace_change[chosen],
            self.cancellation[chosen],
        )


def lowrank_rewards(
    built: Built, terms: Replacement, settings: QuadratureSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards relative to ``built`` by quadrature, and their estimated absolute errors (NaN
    where none exists, including updates that cancel too much to be trusted)."""
    projector_t = built.projector.T
    weight = 1.0 / (built.n - 1)
    removed = terms.xs @ projector_t
    pending = terms.zs @ projector_t
    added = terms.ys @ projector_t
    # The mean shift is (sum zs + sum ys - sum xs) / n: its projection follows from the rows'
    # instead of one more (G, d) x (d, d) product, half the work of per-sample credits.
    shift = (pending.sum(1) + added.sum(1) - removed.sum(1)) / built.n
    common = pending.expand(removed.shape[0], -1, -1)

    def constant(value: float, count: int) -> torch.Tensor:
        return torch.full((count,), value, dtype=torch.float64, device=projector_t.device)

    # Removed rows and the pending commits' rows are common to the groups (or to each group's
    # own row set); each group adds its own rows and the mean shift.
    update = LowRankUpdate(
        shared=torch.cat([removed, common], dim=1).transpose(1, 2),
        own=torch.cat([added, shift.unsqueeze(1)], dim=1).transpose(1, 2),
        shared_weights=torch.cat(
            [constant(-weight, removed.shape[1]), constant(weight, common.shape[1])]
        ),
        own_weights=torch.cat(
            [constant(weight, terms.ys.shape[1]), constant(-1.0, 1) * built.n * weight]
        ),
    )
    change = trace_sqrt_change(built.eigenvalues, update, settings)
    rewards = 2.0 * change.change - terms.mean_change - terms.trace_change
    errors = torch.where(terms.trusted, 2.0 * change.error_estimate, torch.nan)
    return rewards, errors


def exact_rewards(built: Built, terms: Replacement, target: TargetTerms) -> torch.Tensor:
    """Rewards relative to ``built`` from the updated statistics and one ``eigvalsh`` of ``M'``
    per group."""
    count = terms.ys.shape[0]
    d = built.mean.shape[0]
    removed = terms.xs @ target.root  # (1 or G, m, d): rows of (A X~^T)^T
    common = terms.zs @ target.root
    added = terms.ys @ target.root
    shift = terms.delta @ target.root
    # Rows common to the groups (removed in shared mode, pending commits added) once.
    removed_gram = removed.transpose(1, 2) @ removed - common.transpose(1, 2) @ common
    block = max(1, _EXACT_BLOCK_BYTES // (d * d * 8))
    cross = []
    for start in range(0, count, block):
        part = slice(start, start + block)
        update = (
            added[part].transpose(1, 2) @ added[part]
            - (removed_gram if removed_gram.shape[0] == 1 else removed_gram[part])
            - built.n * shift[part].unsqueeze(2) * shift[part].unsqueeze(1)
        ) / (built.n - 1)
        cross.append(trace_sqrt_psd(built.spectrum_matrix + update))
    mean_term = target.mean_term(built.mean) + terms.mean_change
    trace_term = built.trace_cov + terms.trace_change
    fds = frechet_from_terms(mean_term, trace_term, target.trace, torch.cat(cross))
    return built.base_fd - fds
