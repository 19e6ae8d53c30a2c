"""Per-sample credit as a result of its own: the replaced row, and each sample's numbers.

Trainers normalise rewards per prompt, each sample against the other samples of its prompt, so
they need a number per sample, not per group. :meth:`RewardEngine.credits` computes them: each
sample replaces ONE pool row ``i``, the same for all B samples of a request (common random
numbers), ``credit_b = FD_0 - FD(pool with row i replaced by y_b)``, as one batched, certified
problem (a rank-2 update per sample, the shared part once). :func:`sample_credits` gives that
result the shape callers use (one ``row`` instead of (B, 1) indices) and refuses a row and a
seed together rather than ignoring the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .choices import Method
from .reward_engine import RewardEngine

__all__ = ["CreditResult", "sample_credits"]


@dataclass(frozen=True)
class CreditResult:
    """Credits of B samples, all against pool version ``version`` with row ``row`` replaced.

    ``rewards = base_fd - fds`` (B,); ``advantages`` are the rewards normalised over the
    request (ddof 0, ``ADVANTAGE_EPSILON``); ``seed`` drew ``row`` (``None`` when the caller
    chose it); ``methods_used`` and ``error_estimates`` as for group rewards, per sample.
    """

    rewards: np.ndarray
    advantages: np.ndarray
    fds: np.ndarray
    row: int
    seed: int | None
    method: Method
    methods_used: tuple[Method, ...]
    error_estimates: np.ndarray
    version: int
    base_fd: float
    compute_seconds: float


def sample_credits(
    engine: RewardEngine,
    samples: Any,
    seed: int | None = None,
    row: int | None = None,
    method: Method = "lowrank",
) -> CreditResult:
    """Per-sample credits of ``samples`` (B, d) against ``engine``'s head version.

    ``row``: the pool row every sample replaces; drawn from ``seed`` when ``None`` (the seed is
    drawn too when ``None``, and echoed). ``method``: ``lowrank`` (certified, exact fallback per
    sample) or ``exact``.
    """
    if row is not None and seed is not None:
        raise ValueError("send either row or seed: a seed only draws the row")
    result = engine.credits(samples, row=row, seed=seed, method=method)
    return CreditResult(
        rewards=result.rewards,
        advantages=result.advantages,
        fds=result.fds,
        row=int(result.indices[0, 0]),
        seed=result.seed,
        method=result.method,
        methods_used=result.methods_used,
        error_estimates=result.error_estimates,
        version=result.version,
        base_fd=result.base_fd,
        compute_seconds=result.compute_seconds,
    )
