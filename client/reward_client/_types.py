"""What the service answers, as frozen dataclasses.

Arrays are numpy (float64 for rewards, int64 for row indices) and read-only, so a result can
be shared between threads and logged without anyone changing it underneath. Equality is
identity (``eq=False``): element-wise array comparison has no single truth value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "CommitResult",
    "CommittedShare",
    "CreditBatch",
    "CreditForm",
    "FDResult",
    "Method",
    "Mode",
    "PoolFreshness",
    "PoolLag",
    "Readiness",
    "ReferenceInfo",
    "RewardBatch",
    "Timing",
]

#: How the rows ``I`` a group replaces are chosen (shared rows: common random numbers).
Mode: TypeAlias = Literal["shared", "independent", "indices"]
#: How ``FD_I(Y)`` is computed: the low-rank fast path or the exact eigenvalue path.
Method: TypeAlias = Literal["lowrank", "exact"]
#: What a per-sample credit measures: the FD change of adding the sample to the pool (``add``:
#: no pool row, so one sample has one credit at a pool version on every rank and call), or of
#: replacing one pool row by it (``replace``: subset-replace with groups of one).
CreditForm: TypeAlias = Literal["add", "replace"]


@dataclass(frozen=True)
class PoolFreshness:
    """How much of the pool recent commits replaced: ``share`` = rows committed within the
    service's window (``window_versions`` versions and ``window_seconds`` seconds) / N.

    A distribution-wise reward only points the right way while the pool is the policy's own
    distribution; near 0 during training, the pool has stalled and the reward has turned into
    a fixed per-sample score that training will hack. What decides it is the turnover:
    ``turnover_calls`` reward calls at the recent commit volume (``rows_per_call``) renew the
    pool, ``turnover_calls / R`` steps for a trainer of R ranks (None: no commits, the pool
    does not renew; ``rows_per_call`` None: no reward call yet).
    """

    share: float
    rows: int
    window_versions: int
    window_seconds: float
    seconds_since_commit: float | None
    rows_per_call: float | None = None
    turnover_calls: float | None = None


@dataclass(frozen=True)
class PoolLag:
    """How far the version an answer used was behind the newest the service's store held:
    ``versions`` committed beyond it, holding ``rows`` rows. A reward against a pool that lags
    the policy is delayed feedback; the service bounds what it lets lag
    (``DISTREWARD_MAX_LAG_SHARE``), and a request always sees its client's own commits."""

    versions: int
    rows: int


@dataclass(frozen=True)
class CommittedShare:
    """The commit a credits request made of a share of its samples (applied once per key)."""

    version: int
    base_fd: float
    rows: int
    replayed: bool
    idempotency_key: str


@dataclass(frozen=True)
class ReferenceInfo:
    """A reference: its target, its pool (``n`` rows of dimension ``d``) and pool version."""

    name: str
    d: int
    n: int
    version: int
    base_fd: float | None
    created_at: datetime
    updated_at: datetime
    stale: bool
    freshness: PoolFreshness | None = None
    feature_space: str = "unknown"
    lag: PoolLag | None = None
    """How far the version the service holds is behind its store's newest."""
    """Identifier of the feature space of the reference's features (``"unknown"``: statistics
    without provenance, accepted as such by the admin)."""


@dataclass(frozen=True)
class Timing:
    """Seconds the service spent: on the mathematics, and on the whole request."""

    compute_seconds: float
    total_seconds: float


@dataclass(frozen=True, eq=False)
class RewardBatch:
    """Rewards of G groups of one request.

    ``rewards[g] = base_fd - fds[g]``: positive when group g moves the pool toward the target.
    ``advantages`` are the rewards normalised over the request's groups (GRPO style).
    ``indices[g]`` are the pool rows group g replaced; ``seed`` reproduces them.
    ``freshness`` is the pool's before any commit of this request, ``committed`` the commit of
    a share of the rows that ``commit_fraction`` asked for (None when none was made).
    """

    reference: str
    version: int
    stale: bool
    base_fd: float
    mode: str
    seed: int | None
    method: str
    rewards: npt.NDArray[np.float64]
    fds: npt.NDArray[np.float64]
    advantages: npt.NDArray[np.float64]
    methods_used: tuple[str, ...]
    indices: npt.NDArray[np.int64]
    timing: Timing
    freshness: PoolFreshness | None = None
    committed: CommittedShare | None = None
    lag: PoolLag | None = None

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


@dataclass(frozen=True, eq=False)
class CreditBatch:
    """Per-sample credits of B samples of one request.

    ``rewards[b] = base_fd - fds[b]``: the FD change when sample b is added to the pool
    (``form`` ``add``, ``row`` None), or replaces pool row ``row`` (``replace``: the same row
    for every sample of the request, drawn from ``seed``). ``advantages`` are
    the rewards normalised over the request; trainers that normalise per prompt use
    ``rewards``. ``freshness`` is the pool's before any commit of this request;
    ``committed`` the commit of a share of the samples (None when none was asked or drawn);
    ``lag`` how far ``version`` was behind the service's newest.
    """

    reference: str
    version: int
    stale: bool
    base_fd: float
    form: str
    row: int | None
    seed: int | None
    method: str
    rewards: npt.NDArray[np.float64]
    fds: npt.NDArray[np.float64]
    advantages: npt.NDArray[np.float64]
    methods_used: tuple[str, ...]
    error_estimates: npt.NDArray[np.float64]
    freshness: PoolFreshness
    committed: CommittedShare | None
    timing: Timing
    lag: PoolLag | None = None

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


@dataclass(frozen=True)
class CommitResult:
    """The pool after a commit. ``replayed`` is true when the service had already applied
    this ``idempotency_key`` and answered from its record instead of applying it again."""

    reference: str
    version: int
    base_fd: float
    n: int
    replayed: bool
    idempotency_key: str


@dataclass(frozen=True)
class FDResult:
    """Fréchet distance of a posted feature set (n rows) to the reference's target."""

    reference: str
    version: int
    fd: float
    n: int


@dataclass(frozen=True)
class Readiness:
    """The ``/readyz`` probe. ``ready`` is false when the service's store is unreachable;
    ``store`` and ``references`` are what the service reported, when it did."""

    ready: bool
    store: str | None
    references: int | None
