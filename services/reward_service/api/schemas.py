"""API schemas: JSON request bodies and typed responses (separate from the store's records)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engine import CreditForm, Method, Mode
from ..engine.choices import SEED_LIMIT
from ..replication.freshness import Freshness
from ..store.base import StoreKind

__all__ = [
    "CommitRequest",
    "CommitResponse",
    "CommittedShare",
    "CreditsRequest",
    "CreditsResponse",
    "ErrorResponse",
    "FDRequest",
    "FDResponse",
    "FreshnessInfo",
    "Health",
    "LagInfo",
    "Method",
    "Mode",
    "PoolRequest",
    "Readiness",
    "ReferenceInfo",
    "ReferenceList",
    "RewardsRequest",
    "RewardsResponse",
    "StagedPool",
    "TargetRequest",
    "Timing",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(BaseModel):
    detail: str = Field(description="what is wrong and how to fix it")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    store: StoreKind
    references: int
    unloadable: list[str] = Field(
        default_factory=list,
        description="stored references this process cannot load (see its log); others are served",
    )


class FreshnessInfo(BaseModel):
    """How much of the pool recent commits replaced: a distribution-wise reward against a pool
    that does not move turns into a fixed per-sample score that training hacks."""

    share: float = Field(description="pool rows committed within the window / N (0 to 1)")
    rows: int = Field(description="rows committed within the window")
    window_versions: int
    window_seconds: float
    seconds_since_commit: float | None = Field(
        description="since the last commit this process applied; null: none since the pool"
    )
    rows_per_call: float | None = Field(
        description="rows committed per reward call recently; null: no reward call yet"
    )
    turnover_calls: float | None = Field(
        description="reward calls at that volume to renew the pool (a trainer of R ranks: "
        "turnover_calls / R steps); null: the pool does not renew"
    )

    @classmethod
    def of(cls, freshness: Freshness) -> FreshnessInfo:
        return cls(**asdict(freshness))


class LagInfo(BaseModel):
    """How far a version is behind the newest the store held: a reward against a pool that
    lags the policy is delayed feedback (DESIGN section 9)."""

    versions: int = Field(description="versions committed beyond it")
    rows: int = Field(description="rows those versions committed")


class ReferenceInfo(BaseModel):
    name: str
    d: int
    n: int = Field(description="pool rows; 0 before a pool")
    version: int = Field(description="grows by one per published pool, commit or target change")
    base_fd: float | None = Field(description="FD of the pool to the target; null before a pool")
    created_at: datetime
    updated_at: datetime
    stale: bool = Field(
        description="true when the store is unreachable and this is the version held"
    )
    freshness: FreshnessInfo | None = Field(None, description="null before a pool")
    lag: LagInfo | None = Field(
        None, description="how far the version this process holds is behind; null before a pool"
    )
    feature_space: str = Field(
        description="identifier of the feature space of the reference's features, fixed when "
        "it is created; requests post features with this Feature-Space header ('unknown': "
        "statistics without provenance, accepted as such by the admin)"
    )


class ReferenceList(BaseModel):
    references: list[ReferenceInfo]


class TargetRequest(_Body):
    """Either ``mu`` and ``sigma``, or ``features`` to fit them from."""

    mu: list[float] | None = None
    sigma: list[list[float]] | None = None
    features: list[list[float]] | None = None


class PoolRequest(_Body):
    features: list[list[float]] = Field(description="N rows of the reference's width d")
    final: bool = Field(
        True,
        description="publish the upload with this chunk (a published pool holds at least 2 "
        "rows); false: stage it, more chunks follow with POST",
    )


class StagedPool(BaseModel):
    staged_rows: int


Seed = Annotated[int, Field(ge=0, le=SEED_LIMIT - 1)]
Row = Annotated[int, Field(ge=0, le=SEED_LIMIT - 1)]  # a pool row number, int64 on every platform
Pin = Annotated[int, Field(ge=0, description="pin: 409 when the reference moved on")]
After = Annotated[
    int, Field(ge=0, description="your last commit's version: the answer's version holds it")
]
RoundId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:/-]+$",
        description="one round (the ranks of a training step): every request of it is "
        "answered at the version its first request found",
    ),
]


class _CommitsShare(_Body):
    commit_fraction: float | None = Field(
        None, gt=0, le=1, description="commit this share of the rewarded rows (unbiased draw)"
    )
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="or the Idempotency-Key header (both: the same key, else a 400)",
    )


class RewardsRequest(_CommitsShare):
    groups: list[list[list[float]]] = Field(description="G groups of K feature rows of width d")
    mode: Mode = "shared"
    seed: Seed | None = None
    indices: list[list[Row]] | list[Row] | None = Field(
        None, description='mode "indices" only: K pool rows for every group, or G lists of K'
    )
    method: Method = "lowrank"
    version: Pin | None = None
    after: After | None = None


class CreditsRequest(_CommitsShare):
    samples: list[list[float]] = Field(description="B feature rows of width d")
    form: CreditForm = Field(
        "add",
        description="add: FD change of adding each sample to the pool (no pool row: the same "
        "credit on every rank); replace: of replacing one shared pool row by each sample",
    )
    seed: Seed | None = Field(
        None,
        description="form replace: draws the replaced row (not with row); both forms: "
        "seeds the draw of commit_fraction",
    )
    row: Row | None = Field(
        None, description="form replace only: the pool row every sample replaces (not with seed)"
    )
    method: Method = "lowrank"
    version: Pin | None = None
    after: After | None = None
    round: RoundId | None = None


class Timing(BaseModel):
    compute_seconds: float
    total_seconds: float


class CommittedShare(BaseModel):
    """The commit a rewards or credits request made of a share of its rows."""

    version: int
    base_fd: float
    rows: int
    replayed: bool = Field(description="true when a retry found it applied already")


class _Rewarded(BaseModel):
    reference: str
    version: int
    stale: bool
    base_fd: float
    seed: int | None
    method: Method
    rewards: list[float]
    fds: list[float]
    advantages: list[float]
    methods_used: list[Method]
    error_estimates: list[float | None] = Field(description="null where computed exactly")
    freshness: FreshnessInfo
    lag: LagInfo = Field(description="how far the version used was behind the store's newest")
    committed: CommittedShare | None = Field(description="null when nothing was committed")
    timing: Timing


class RewardsResponse(_Rewarded):
    mode: Mode
    indices: list[list[int]]


class CreditsResponse(_Rewarded):
    form: CreditForm
    row: int | None = Field(description="the pool row every sample replaced (null for add)")


class CommitRequest(_Body):
    """The key travels in the ``Idempotency-Key`` header, whatever the body's format."""

    features: list[list[float]]


class CommitResponse(BaseModel):
    reference: str
    version: int
    base_fd: float
    n: int
    replayed: bool


class FDRequest(_Body):
    features: list[list[float]]


class FDResponse(BaseModel):
    reference: str
    version: int
    fd: float
    n: int
