"""Per-sample credit: each sample's own distribution-wise reward, B samples as one batched problem.

Trainers normalise rewards per prompt, each sample against the other samples of its prompt, so
they need a number per sample, not per group. Sample ``b``'s credit replaces ONE pool row ``i``,
the same row for all B samples of a request (common random numbers), by ``y_b``:

    credit_b = FD_0 - FD(pool with row i replaced by y_b)

Centred at the built pool mean the covariance changes by ``(y~ y~^T - x~ x~^T - N delta
delta^T) / (N - 1)`` with ``delta = (y~ - x~) / N`` in the span of ``x~_i`` and ``y~_b``: each
sample's update is a singleton subset-replace whose removed column ``x~_i`` (and any pending
commits' columns) is shared by the request. The low-rank path projects all B samples with one
GEMM, factors the shared block once per quadrature node and leaves each sample a 2 x 2 Schur
complement, so B samples cost far less than B requests. Pending (committed, not yet rebuilt)
rows are folded in as for group rewards, and every credit is certified the same way (error
estimate, exact fallback per sample, float64): this is :meth:`RewardEngine.rewards` with groups
of one sample and one shared row, which is the point: one code path, one certification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .choices import Method
from .linalg import as_float64
from .reward_engine import RewardEngine
from .validation import check_features

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
    ys = as_float64(samples, engine.device, "samples")
    check_features(ys, engine.d, "samples", min_rows=1)
    groups = ys.unsqueeze(1)
    if row is None:
        result = engine.rewards(groups, mode="shared", seed=seed, method=method)
    else:
        if seed is not None:
            raise ValueError("send either row or seed: a seed only draws the row")
        result = engine.rewards(groups, mode="indices", indices=[row], method=method)
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
