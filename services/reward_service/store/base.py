"""The store interface: what a replica needs to persist and share a reference, and nothing of HTTP.

A reference is a *base* (target statistics, a pool, the ring cursor, at a version) plus an
append-only *log* of what happened after it. Every change that bumps the version is one log entry,
so every replica reaches the same state by loading the base and replaying the log in order:

* ``commit``: rows that replace the oldest pool rows (ring order);
* ``target``: the target statistics were replaced (replicas re-read them and rebuild);
* ``pool``: a new pool was published (replicas reload the base).

Snapshots move the base forward (pool rows, cursor and sufficient statistics at a version) so that
the log does not grow without bound. Store implementations raise :class:`StoreUnavailable` when
the backing service cannot be reached, which the API turns into 503 + ``Retry-After``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

__all__ = [
    "Base",
    "CommitAck",
    "CommitRecord",
    "IdempotencyConflict",
    "LogEntry",
    "LogKind",
    "ReferenceMeta",
    "Statistics",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreKind",
    "StoreUnavailable",
    "Target",
    "rows_digest",
    "space_conflict",
]

LogKind = Literal["commit", "target", "pool"]
StoreKind = Literal["memory", "redis"]


class StoreError(Exception):
    """Base class of the errors a store raises."""


class StoreUnavailable(StoreError):
    """The backing service could not be reached; ``operation`` names what was attempted."""

    def __init__(self, operation: str, message: str = "the store is unreachable") -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation


class StoreConflict(StoreError):
    """The reference is not in the state the operation needs (gone, no target, no pool...)."""


def space_conflict(name: str, held: str, sent: str) -> StoreConflict:
    """A target of another feature space than the reference's (decided atomically by the store:
    a reference never holds statistics of two spaces)."""
    return StoreConflict(
        f"feature space mismatch: reference {name!r} holds features of {held!r}, the new target "
        f"is in {sent!r}; delete the reference to change its feature space"
    )


class IdempotencyConflict(StoreConflict):
    """An idempotency key seen before came with another digest: a different commit (other
    rows, or a share of another request), not a retry."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was used for another commit (other rows, or a share of "
            "another request); reuse a key only to retry the same request, and send a new key "
            "with a new one"
        )


@dataclass(frozen=True)
class ReferenceMeta:
    """Small per-reference record, cheap to read on every request."""

    name: str
    d: int
    n: int  # rows of the published pool; 0 before a pool
    version: int
    incarnation: str  # changes when the reference is deleted and created again
    created_at: float  # unix seconds
    updated_at: float
    staged_rows: int  # rows of a pool upload in progress
    feature_space: str  # identifier of the features' space, fixed for the reference's life
    rows: int = 0  # rows committed in the reference's life so far (what a version lags by)


@dataclass(frozen=True)
class Target:
    """Target Gaussian: mean (d,) and covariance (d, d), float64."""

    mu: np.ndarray
    sigma: np.ndarray


@dataclass(frozen=True)
class Statistics:
    """Sufficient statistics of a pool, float64: ``total = sum (x - shift)`` (d,) and ``gram =
    sum (x - shift)(x - shift)^T`` (d, d) over ``n`` rows. The shift (a zero vector for
    snapshots written before it was kept) keeps their digits far from the origin."""

    total: np.ndarray
    gram: np.ndarray
    n: int
    shift: np.ndarray


@dataclass(frozen=True)
class Base:
    """A pool state at ``version``; the log is replayed from after ``log_id``."""

    version: int
    pool: np.ndarray  # (N, d) in the dtype it was uploaded in
    cursor: int  # next ring row a commit replaces
    log_id: str
    statistics: Statistics | None  # present for snapshots, None for a freshly published pool
    rows: int = 0  # rows committed in the reference's life up to ``version``


@dataclass(frozen=True)
class SharedBuild:
    """A version's precompute one process built and shared, for the others to adopt: the
    version, the base FD its builder computed, and named float64 arrays."""

    version: int
    base_fd: float
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class LogEntry:
    log_id: str
    version: int
    kind: LogKind
    features: np.ndarray | None  # the committed rows for ``commit`` entries
    rows: int = 0  # rows committed in the reference's life up to this entry, included


_DIGEST_VALUES = 1 << 20  # values converted to float64 at a time while a digest is taken


def rows_digest(rows: np.ndarray, context: str = "") -> str:
    """SHA-256 of ``rows``' shape and float64 values, so that a retry sent as JSON, float32 or
    float64 ``.npy`` has the same one, then of ``context`` (what else decides a commit). Taken
    a slice at a time: no float64 copy of the whole array."""
    digest = hashlib.sha256(repr(rows.shape).encode())
    values = rows.reshape(-1)
    for start in range(0, values.size, _DIGEST_VALUES):
        part = values[start : start + _DIGEST_VALUES]
        digest.update(np.ascontiguousarray(part, dtype=np.float64).data)
    digest.update(context.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CommitRecord:
    """A commit to append: its rows (none: a share of a request that drew no row, whose key is
    remembered all the same), and the idempotency key that makes a retry apply once, with a
    digest of what it commits (the same key with another is refused), how long the key is kept,
    and whose key it is: ``caller`` (a digest of the caller's token, never the token; "" without
    authentication) scopes it, so that one caller's key is not another's."""

    features: np.ndarray
    idempotency_key: str
    digest: str
    ttl_seconds: int
    now: float
    caller: str

    @classmethod
    def of(
        cls,
        features: np.ndarray,
        key: str,
        ttl_seconds: int,
        now: float,
        *,
        caller: str,
        digest: str | None = None,
    ) -> CommitRecord:
        """The record of a commit of ``features`` under ``caller``'s ``key``, remembered with
        ``digest`` (of what decided the commit: a share's request), else the rows' own
        (:func:`rows_digest`)."""
        digest = rows_digest(features) if digest is None else digest
        return cls(features, key, digest, ttl_seconds, now, caller)


@dataclass(frozen=True)
class CommitAck:
    version: int
    replayed: bool  # True when the idempotency key had been seen: nothing was appended


class Store(ABC):
    """Persistence and sharing of references; async, knows arrays and versions only."""

    kind: ClassVar[StoreKind]

    @property
    def epoch(self) -> int:
        """Changes when the store may have lost writes that were read but never acknowledged
        (a failover to another Redis primary): what was read before may be history the store
        no longer has, so replicas load again. Constant where there is no failover."""
        return 0

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` when the store cannot serve requests."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def list_names(self) -> list[str]: ...

    @abstractmethod
    async def read_meta(self, name: str) -> ReferenceMeta | None: ...

    @abstractmethod
    async def put_target(
        self, name: str, target: Target, now: float, *, feature_space: str
    ) -> ReferenceMeta:
        """Create the reference in ``feature_space`` or replace its target; with a pool this
        appends a ``target`` entry (version + 1). A different d or feature space than the stored
        one is a :class:`StoreConflict`."""

    @abstractmethod
    async def read_target(self, name: str) -> Target: ...

    @abstractmethod
    async def stage_pool(
        self, name: str, incarnation: str, chunk: np.ndarray, *, reset: bool
    ) -> int:
        """Append rows to the pool upload in progress (``reset`` starts a new one); returns the
        rows staged so far."""

    @abstractmethod
    async def publish_pool(self, name: str, incarnation: str, now: float) -> int:
        """Make the staged rows the pool (cursor 0) and append a ``pool`` entry; returns the new
        version."""

    @abstractmethod
    async def append_commit(self, name: str, incarnation: str, commit: CommitRecord) -> CommitAck:
        """Atomically: if the caller's key was seen return its version (or raise
        :class:`IdempotencyConflict` when its digest differs), else append a ``commit`` entry,
        bump the version and remember the caller's key with the digest. A record of no rows
        only remembers its key, at the current version."""

    @abstractmethod
    async def seen_commit(
        self, name: str, incarnation: str, caller: str, key: str, now: float
    ) -> bool:
        """Whether the caller's commit ``key`` is remembered at ``now`` (a retry of it appends
        nothing), changing nothing."""

    @abstractmethod
    async def read_base(self, name: str) -> Base: ...

    @abstractmethod
    async def read_log(self, name: str, after: str) -> list[LogEntry]:
        """Entries after log position ``after``, in order."""

    @abstractmethod
    async def write_snapshot(self, name: str, incarnation: str, base: Base) -> bool:
        """Move the base forward to ``base`` unless the stored base is already as new; drop the
        log entries it covers. Returns whether it was written."""

    @abstractmethod
    async def claim_build(
        self, name: str, incarnation: str, holder: str, ttl_seconds: float
    ) -> bool:
        """Whether ``holder`` may build the reference's next precompute: no other holder has
        claimed one in the last ``ttl_seconds`` (or released it)."""

    @abstractmethod
    async def release_build(self, name: str, incarnation: str, holder: str) -> None:
        """Give up ``holder``'s claim (another holder's is left alone)."""

    @abstractmethod
    async def share_build(self, name: str, incarnation: str, build: SharedBuild) -> bool:
        """Keep ``build`` as the reference's shared precompute unless one of its version or
        newer is kept; returns whether it was kept."""

    @abstractmethod
    async def shared_build_version(self, name: str, incarnation: str) -> int | None:
        """The version of the shared precompute (None: none), without its arrays."""

    @abstractmethod
    async def read_shared_build(self, name: str, incarnation: str) -> SharedBuild | None: ...

    @abstractmethod
    async def round_version(
        self, name: str, incarnation: str, round_id: str, proposal: int, ttl_seconds: int
    ) -> int:
        """The version the requests of ``round_id`` are answered at: the first proposal made
        for it in this life of the reference (kept ``ttl_seconds``), whoever made it."""

    @abstractmethod
    async def delete(self, name: str) -> bool:
        """Remove everything of the reference; False when it did not exist."""
