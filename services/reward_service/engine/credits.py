"""Per-sample credits as a function: :meth:`RewardEngine.credits` for callers that hold an engine.

Trainers normalise rewards per prompt, each sample against the other samples of its prompt, so
they need a number per sample, not per group. The default ``add`` form, ``FD_0 - FD(pool with the
sample added)``, depends on the sample and the pool version only: under DDP, where one prompt's
samples are spread over ranks that each call on their own, every rank gets the same credit for
the same sample. The ``replace`` form (one pool row, shared by the request, replaced by each
sample) is subset-replace with groups of one, for callers that compare credits with group rewards.
"""

from __future__ import annotations

from typing import Any

from .choices import CreditForm, Method
from .results import CreditResult
from .reward_engine import RewardEngine

__all__ = ["CreditResult", "sample_credits"]


def sample_credits(
    engine: RewardEngine,
    samples: Any,
    seed: int | None = None,
    row: int | None = None,
    method: Method = "lowrank",
    form: CreditForm = "add",
    version: int | None = None,
) -> CreditResult:
    """Per-sample credits of ``samples`` (B, d) against ``engine``'s head version, or a recent
    ``version`` (``add`` only).

    ``form``: ``add`` (no pool row; ``row`` and ``seed`` are refused) or ``replace``
    (``row``: the pool row every sample replaces, drawn from ``seed`` when None, the seed
    drawn too when None and echoed). ``method``: ``lowrank`` (certified, exact fallback per
    sample) or ``exact``.
    """
    return engine.credits(samples, form=form, row=row, seed=seed, method=method, version=version)
