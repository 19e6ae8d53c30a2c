"""Pool versions: the built precompute, and the head that runs ahead of it.

A *built* version holds the pool's statistics and the O(d^3) precompute every reward path shares
(``M = A S A = Q diag(lam) Q^T``, ``B = Q^T A``). The *head* is the newest version: a built one
plus the rows committed since, recorded as the positions they changed and the rows those
positions held when the built version was made. Relative to the built pool the head differs by
"remove the original rows at the touched positions, add the current ones", whatever happened in
between: a row committed and pushed out again before the next build never enters any
computation. All three are immutable; the engine swaps references to them under its locks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .linalg import frechet_from_terms, symmetric_sqrt, symmetrize
from .pending import PendingFactor
from .statistics import ShiftedSums

__all__ = ["Built", "Changes", "Head", "TargetTerms"]


@dataclass(frozen=True)
class TargetTerms:
    """The target's mean, covariance, its root ``A = S_r^{1/2}`` and its trace."""

    mean: torch.Tensor
    sigma: torch.Tensor
    root: torch.Tensor
    trace: float

    @classmethod
    def of(cls, mean: torch.Tensor, sigma: torch.Tensor) -> TargetTerms:
        sigma = symmetrize(sigma)
        return cls(mean, sigma, symmetric_sqrt(sigma), float(sigma.trace()))

    def mean_term(self, mean: torch.Tensor) -> torch.Tensor:
        """``|mu - mu_r|^2``, the FD's mean term."""
        return (mean - self.mean).square().sum(-1)


@dataclass(frozen=True)
class Built:
    """One built pool version: its statistics and the precompute the reward paths share."""

    version: int
    sums: ShiftedSums
    mean: torch.Tensor
    trace_cov: float
    spectrum_matrix: torch.Tensor  # M = A S A
    eigenvalues: torch.Tensor  # of M, ascending, unclipped
    projector: torch.Tensor  # B = Q^T A
    base_fd: float

    @property
    def n(self) -> int:
        return self.sums.n

    @classmethod
    def build(cls, version: int, sums: ShiftedSums, target: TargetTerms) -> Built:
        """The O(d^3) precompute: one ``eigh`` of ``M = A S A``."""
        spectrum_matrix = symmetrize(target.root @ sums.covariance() @ target.root)
        eigenvalues, eigenvectors = torch.linalg.eigh(spectrum_matrix)
        projector = eigenvectors.T @ target.root
        return cls.adopted(version, sums, target, eigenvalues, projector, spectrum_matrix)

    @classmethod
    def adopted(
        cls,
        version: int,
        sums: ShiftedSums,
        target: TargetTerms,
        eigenvalues: torch.Tensor,
        projector: torch.Tensor,
        spectrum_matrix: torch.Tensor,
    ) -> Built:
        """The version of ``sums`` with its precompute, made here (:meth:`build`) or by
        another process (its ``eigh`` adopted): the base FD follows from the sums and the
        eigenvalues."""
        mean = sums.mean
        trace_cov = sums.trace_covariance()
        cross = eigenvalues.clamp_min(0.0).sqrt().sum()
        base_fd = frechet_from_terms(target.mean_term(mean), trace_cov, target.trace, cross)
        return cls(
            version=version,
            sums=sums,
            mean=mean,
            trace_cov=trace_cov,
            spectrum_matrix=spectrum_matrix,
            eigenvalues=eigenvalues,
            projector=projector,
            base_fd=float(base_fd),
        )


@dataclass(frozen=True)
class Changes:
    """Pool rows changed since some version: their positions (P,) and the rows they held then
    (P, d), in the order they were first touched."""

    positions: torch.Tensor
    originals: torch.Tensor

    @classmethod
    def none(cls, d: int, device: torch.device) -> Changes:
        return cls(
            torch.zeros(0, dtype=torch.int64, device=device),
            torch.zeros(0, d, dtype=torch.float64, device=device),
        )

    @property
    def rows(self) -> int:
        return int(self.positions.shape[0])

    def then(self, positions: torch.Tensor, before: torch.Tensor) -> tuple[Changes, torch.Tensor]:
        """These changes followed by overwriting the distinct ``positions`` (which held
        ``before``), and where each of ``positions`` sits in the result. A position touched
        again keeps the row it held first."""
        slots = {position: i for i, position in enumerate(self.positions.tolist())}
        where: list[int] = []
        fresh: list[int] = []
        for i, position in enumerate(positions.tolist()):
            if position not in slots:
                slots[position] = self.rows + len(fresh)
                fresh.append(i)
            where.append(slots[position])
        chosen = torch.as_tensor(fresh, dtype=torch.int64, device=positions.device)
        changes = Changes(
            torch.cat([self.positions, positions[chosen]]),
            torch.cat([self.originals, before[chosen]]),
        )
        return changes, torch.as_tensor(where, dtype=torch.int64, device=positions.device)


@dataclass(frozen=True)
class Head:
    """The newest pool version: ``built`` plus ``changes``, with its base FD and that value's
    estimated absolute error (0 where it was computed exactly or built), and the factorisation
    of ``changes`` the next commit extends (None when nothing is pending, or when it has to be
    started again)."""

    version: int
    built: Built
    changes: Changes
    base_fd: float
    base_error: float
    factor: PendingFactor | None = None

    @classmethod
    def at(cls, built: Built) -> Head:
        """The head of a freshly built version: nothing pending."""
        d = built.mean.shape[0]
        return cls(built.version, built, Changes.none(d, built.mean.device), built.base_fd, 0.0)
