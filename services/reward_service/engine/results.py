"""What the engine answers: rewards of groups, credits of samples, commits, and a pool's
statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .choices import CreditForm, Method, Mode

__all__ = [
    "ADVANTAGE_EPSILON",
    "Committed",
    "CreditResult",
    "PoolStatistics",
    "RewardResult",
    "advantages_of",
]

ADVANTAGE_EPSILON = 1e-8
"""Added to the standard deviation in ``(r - mean) / (std + eps)``: equal rewards give zero
advantages instead of 0/0."""


def advantages_of(rewards: np.ndarray) -> np.ndarray:
    """Rewards normalised over a request: ``(r - mean) / (std + ADVANTAGE_EPSILON)``, ddof 0."""
    normalised: np.ndarray = (rewards - rewards.mean()) / (rewards.std() + ADVANTAGE_EPSILON)
    return normalised


@dataclass(frozen=True)
class RewardResult:
    """Rewards of the G groups of one request, all for pool version ``version``.

    ``rewards = base_fd - fds``; ``advantages`` are the rewards normalised over the request
    (ddof 0, :data:`ADVANTAGE_EPSILON`); ``indices`` are the pool rows each group replaced;
    ``methods_used`` names, per group, the path that produced its numbers (``exact`` where the
    low-rank path fell back); ``error_estimates`` is the low-rank path's estimated absolute error
    of each reward (NaN for exact groups).
    """

    fds: np.ndarray
    rewards: np.ndarray
    advantages: np.ndarray
    indices: np.ndarray
    seed: int | None
    mode: Mode
    method: Method
    methods_used: tuple[Method, ...]
    error_estimates: np.ndarray
    version: int
    base_fd: float
    compute_seconds: float


@dataclass(frozen=True)
class Committed:
    """A commit's answer: the version it made and that version's base FD. ``method``:
    ``lowrank`` (certified from the last built precompute, ``error_estimate`` its estimated
    absolute error) or ``exact`` (the version was built, error 0). ``pending_rows``: rows changed
    since the last built version, which the next :meth:`RewardEngine.rebuild` folds in."""

    version: int
    base_fd: float
    method: Method
    error_estimate: float
    pending_rows: int


@dataclass(frozen=True)
class CreditResult:
    """Credits of B samples, all against pool version ``version``: ``rewards = base_fd -
    fds`` (B,), where ``fds`` are the FDs of the pool with each sample added (``form`` ``add``)
    or with row ``row`` replaced by it (``replace``; ``row`` is None for ``add``).
    ``advantages`` are the rewards normalised over the request (ddof 0,
    :data:`ADVANTAGE_EPSILON`); ``seed`` drew ``row`` (None when the caller chose it, and for
    ``add``); ``methods_used`` and ``error_estimates`` as for group rewards, per sample.
    """

    rewards: np.ndarray
    advantages: np.ndarray
    fds: np.ndarray
    form: CreditForm
    row: int | None
    seed: int | None
    method: Method
    methods_used: tuple[Method, ...]
    error_estimates: np.ndarray
    version: int
    base_fd: float
    compute_seconds: float

    @classmethod
    def of_groups_of_one(cls, result: RewardResult) -> CreditResult:
        """The ``replace`` form's credits from the rewards of groups of one sample, all
        replacing the same row."""
        return cls(
            rewards=result.rewards,
            advantages=result.advantages,
            fds=result.fds,
            form="replace",
            row=int(result.indices[0, 0]),
            seed=result.seed,
            method=result.method,
            methods_used=result.methods_used,
            error_estimates=result.error_estimates,
            version=result.version,
            base_fd=result.base_fd,
            compute_seconds=result.compute_seconds,
        )


@dataclass(frozen=True)
class PoolStatistics:
    """Sufficient statistics of a pool, float64: ``total = sum (x - shift)`` (d,), ``gram =
    sum (x - shift)(x - shift)^T`` (d, d) over ``n`` rows. The shift (the pool mean when they
    were last computed from the rows) keeps their digits far from the origin."""

    shift: np.ndarray
    total: np.ndarray
    gram: np.ndarray
    n: int

    def raw_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sum x, sum x x^T)`` about the origin, for consumers of raw sums (these lose the
        digits the shift keeps when the pool is far from the origin)."""
        cross = np.outer(self.shift, self.total)
        gram = self.gram + cross + cross.T + self.n * np.outer(self.shift, self.shift)
        return self.total + self.n * self.shift, gram
