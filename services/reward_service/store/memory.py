"""In-process store: the embedded default when no Redis URL is configured.

Every method runs without awaiting in between, so each is atomic under asyncio; arrays are kept
read-only so callers cannot change stored state by accident. State is lost with the process.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from .base import (
    Base,
    CommitAck,
    CommitRecord,
    IdempotencyConflict,
    LogEntry,
    LogKind,
    ReferenceMeta,
    SharedBuild,
    Store,
    StoreConflict,
    Target,
    space_conflict,
)

__all__ = ["MemoryStore"]


def _frozen(array: np.ndarray) -> np.ndarray:
    copy = np.array(array, copy=True)
    copy.flags.writeable = False
    return copy


def _log_seq(log_id: str) -> int:
    return int(log_id.split("-", 1)[0])


@dataclass(frozen=True)
class _Seen:
    """An idempotency key's answer (keys are held per caller: ``(caller, key)``)."""

    version: int
    digest: str
    expires: float


@dataclass
class _Reference:
    meta: ReferenceMeta
    target: Target
    base: Base | None = None
    staging: list[np.ndarray] = field(default_factory=list)
    log: list[LogEntry] = field(default_factory=list)
    next_seq: int = 1
    # Idempotency keys, (caller, key), in the order they expire (one TTL for all: insertion
    # order), so the expired ones are dropped from the front as commits arrive.
    idempotency: OrderedDict[tuple[str, str], _Seen] = field(default_factory=OrderedDict)
    # Rounds' versions with their expiry, in the order they expire (one TTL for all).
    rounds: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    build: SharedBuild | None = None
    lease: tuple[str, float] | None = None  # (holder, expires)

    def append(self, kind: LogKind, features: np.ndarray | None, now: float) -> LogEntry:
        version = self.meta.version + 1
        rows = self.meta.rows + (0 if features is None else len(features))
        entry = LogEntry(f"{self.next_seq}-0", version, kind, features, rows)
        self.next_seq += 1
        self.log.append(entry)
        self.meta = replace(self.meta, version=version, updated_at=now, rows=rows)
        return entry


class MemoryStore(Store):
    kind = "memory"

    def __init__(self) -> None:
        self._refs: dict[str, _Reference] = {}

    def _get(self, name: str, incarnation: str | None = None) -> _Reference:
        ref = self._refs.get(name)
        if ref is None or (incarnation is not None and ref.meta.incarnation != incarnation):
            raise StoreConflict(f"reference {name!r} no longer exists")
        return ref

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        """Nothing to release: the state lives as long as this object (apps that share it, as
        replicas in one process, each close it)."""

    async def list_names(self) -> list[str]:
        return sorted(self._refs)

    async def read_meta(self, name: str) -> ReferenceMeta | None:
        ref = self._refs.get(name)
        return None if ref is None else ref.meta

    async def put_target(
        self, name: str, target: Target, now: float, *, feature_space: str
    ) -> ReferenceMeta:
        stored = Target(_frozen(target.mu), _frozen(target.sigma))
        ref = self._refs.get(name)
        if ref is None:
            token = secrets.token_hex(8)
            meta = ReferenceMeta(name, len(target.mu), 0, 0, token, now, now, 0, feature_space)
            self._refs[name] = _Reference(meta, stored)
            return meta
        if ref.meta.d != len(target.mu):
            raise StoreConflict(
                f"reference {name!r} has d={ref.meta.d}; delete it to change the dimension"
            )
        if ref.meta.feature_space != feature_space:
            raise space_conflict(name, ref.meta.feature_space, feature_space)
        ref.target = stored
        if ref.base is not None:
            ref.append("target", None, now)
        else:
            ref.meta = replace(ref.meta, updated_at=now)
        return ref.meta

    async def read_target(self, name: str) -> Target:
        return self._get(name).target

    async def stage_pool(
        self, name: str, incarnation: str, chunk: np.ndarray, *, reset: bool
    ) -> int:
        ref = self._get(name, incarnation)
        if reset:
            ref.staging = []
        ref.staging.append(_frozen(chunk))
        rows = sum(len(part) for part in ref.staging)
        ref.meta = replace(ref.meta, staged_rows=rows)
        return rows

    async def publish_pool(self, name: str, incarnation: str, now: float) -> int:
        ref = self._get(name, incarnation)
        if not ref.staging:
            raise StoreConflict(f"reference {name!r} has no pool upload in progress")
        pool = _frozen(np.concatenate(ref.staging))
        ref.staging = []
        entry = ref.append("pool", None, now)
        ref.base = Base(entry.version, pool, 0, entry.log_id, None, entry.rows)
        ref.log = [entry]
        ref.meta = replace(ref.meta, n=len(pool), staged_rows=0)
        return entry.version

    async def append_commit(self, name: str, incarnation: str, commit: CommitRecord) -> CommitAck:
        ref = self._get(name, incarnation)
        keys = ref.idempotency
        while keys and next(iter(keys.values())).expires <= commit.now:
            keys.popitem(last=False)
        scoped = (commit.caller, commit.idempotency_key)
        seen = keys.get(scoped)
        if seen is not None:
            if seen.digest != commit.digest:
                raise IdempotencyConflict(commit.idempotency_key)
            return CommitAck(seen.version, replayed=True)
        if ref.base is None:
            raise StoreConflict(f"reference {name!r} has no pool yet")
        rows = len(commit.features)
        if rows > ref.meta.n:
            raise StoreConflict(f"{rows} rows exceed the pool size {ref.meta.n}")
        version = ref.meta.version
        if rows:
            version = ref.append("commit", _frozen(commit.features), commit.now).version
        keys[scoped] = _Seen(version, commit.digest, commit.now + commit.ttl_seconds)
        return CommitAck(version, replayed=False)

    async def seen_commit(
        self, name: str, incarnation: str, caller: str, key: str, now: float
    ) -> bool:
        seen = self._get(name, incarnation).idempotency.get((caller, key))
        return seen is not None and seen.expires > now

    async def read_base(self, name: str) -> Base:
        base = self._get(name).base
        if base is None:
            raise StoreConflict(f"reference {name!r} has no pool yet")
        return base

    async def read_log(self, name: str, after: str) -> list[LogEntry]:
        seq = _log_seq(after)
        return [entry for entry in self._get(name).log if _log_seq(entry.log_id) > seq]

    async def write_snapshot(self, name: str, incarnation: str, base: Base) -> bool:
        ref = self._get(name, incarnation)
        if ref.base is not None and ref.base.version >= base.version:
            return False
        ref.base = replace(base, pool=_frozen(base.pool))
        seq = _log_seq(base.log_id)
        ref.log = [entry for entry in ref.log if _log_seq(entry.log_id) >= seq]
        return True

    async def claim_build(
        self, name: str, incarnation: str, holder: str, ttl_seconds: float
    ) -> bool:
        ref = self._get(name, incarnation)
        now = time.monotonic()
        if ref.lease is not None and ref.lease[0] != holder and ref.lease[1] > now:
            return False
        ref.lease = (holder, now + ttl_seconds)
        return True

    async def release_build(self, name: str, incarnation: str, holder: str) -> None:
        ref = self._get(name, incarnation)
        if ref.lease is not None and ref.lease[0] == holder:
            ref.lease = None

    async def share_build(self, name: str, incarnation: str, build: SharedBuild) -> bool:
        ref = self._get(name, incarnation)
        if ref.build is not None and ref.build.version >= build.version:
            return False
        ref.build = SharedBuild(
            build.version, build.base_fd, {k: _frozen(v) for k, v in build.arrays.items()}
        )
        return True

    async def shared_build_version(self, name: str, incarnation: str) -> int | None:
        build = self._get(name, incarnation).build
        return None if build is None else build.version

    async def read_shared_build(self, name: str, incarnation: str) -> SharedBuild | None:
        return self._get(name, incarnation).build

    async def round_version(
        self, name: str, incarnation: str, round_id: str, proposal: int, ttl_seconds: int
    ) -> int:
        rounds = self._get(name, incarnation).rounds
        now = time.monotonic()
        while rounds and next(iter(rounds.values()))[1] <= now:
            rounds.popitem(last=False)
        if round_id not in rounds:
            rounds[round_id] = (proposal, now + ttl_seconds)
        return rounds[round_id][0]

    async def delete(self, name: str) -> bool:
        return self._refs.pop(name, None) is not None
