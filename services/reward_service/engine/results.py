"""What the engine answers: rewards of groups, credits of samples, and commits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .choices import CreditForm, Method, Mode

__all__ = ["ADVANTAGE_EPSILON", "Committed", "CreditResult", "RewardResult", "advantages_of"]

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
