"""Redis store (redis-py asyncio + hiredis): shared state for any number of service replicas.

Per reference (keys in :mod:`.keys`): a metadata hash, the target statistics, the base pool as a
list of ``.npy`` chunks of one *generation*, the base's sufficient statistics (snapshots), and the
log as a Redis Stream. Every version change is one Lua script, so it is atomic: no lost, doubled
or torn commits under concurrent trainers and replicas.

Metadata hash fields: ``incarnation d n version created_at updated_at staged_rows feature_space
rows`` (records written before feature spaces were kept lack ``feature_space``: their space is
``"unknown"``; ``rows``, the rows committed in the reference's life, counts from when it was
kept) and the base pointer ``base_gen base_version base_log_id base_cursor base_rows``. Commit
entries carry ``rows`` too, the count up to them.

Replication and failover. Redis replicates asynchronously: a write the primary answered can still
be missing from its replicas when the primary dies, and a promoted replica then never had it.
With ``min_replicas`` > 0 a write (target, pool chunk and publish, commit, delete) is acknowledged
only once ``WAIT`` says that many replicas hold it, otherwise it answers
:class:`StoreUnavailable` (503, send it again). ``WAIT`` covers the writes made on its own
connection, so each write operation runs on one connection that is never re-established inside
the operation (no command retry there): a connection lost midway fails the operation, and the
client sends it again whole. A retried commit whose first attempt reached the primary finds its
idempotency key there and answers the first version; it renews the key's expiry, a write, so that
the ``WAIT`` after it covers the commit it names. With sentinels (:meth:`RedisStore.from_sentinels`)
every new connection asks them for the primary; :attr:`RedisStore.epoch` counts the changes, so
that replicas drop what they read from a primary that may have taken writes its successor lacks.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast, get_args

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..feature_spaces import UNKNOWN_FEATURE_SPACE
from .base import (
    Base,
    CommitAck,
    CommitRecord,
    IdempotencyConflict,
    LogEntry,
    LogKind,
    ReferenceMeta,
    SharedBuild,
    Statistics,
    Store,
    StoreConflict,
    StoreUnavailable,
    Target,
    space_conflict,
)
from .codec import array_from_bytes, array_to_bytes
from .keys import Keys

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)

# KEYS[1] meta, KEYS[2] target, KEYS[3] log
# ARGV[1] incarnation for a new reference, ARGV[2] d, ARGV[3] mu, ARGV[4] sigma (.npy), ARGV[5] now,
# ARGV[6] feature space, ARGV[7] the space of a record that has none (written before spaces were)
# Creates the reference or replaces its target; with a pool, bumps the version and logs "target".
# Returns the version, or -1 when the reference exists with another d, -2 with another space.
PUT_TARGET = """
local d = redis.call('HGET', KEYS[1], 'd')
if not d then
  redis.call('HSET', KEYS[1], 'incarnation', ARGV[1], 'd', ARGV[2], 'n', 0, 'version', 0,
             'created_at', ARGV[5], 'updated_at', ARGV[5], 'staged_rows', 0,
             'feature_space', ARGV[6])
elseif d ~= ARGV[2] then
  return -1
elseif (redis.call('HGET', KEYS[1], 'feature_space') or ARGV[7]) ~= ARGV[6] then
  return -2
end
redis.call('HSET', KEYS[2], 'mu', ARGV[3], 'sigma', ARGV[4])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[5])
if tonumber(redis.call('HGET', KEYS[1], 'n')) > 0 then
  local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('XADD', KEYS[3], '*', 'kind', 'target', 'version', version)
  return version
end
return tonumber(redis.call('HGET', KEYS[1], 'version'))
"""

# KEYS[1] meta, KEYS[2] staging list
# ARGV[1] incarnation, ARGV[2] chunk (.npy), ARGV[3] its rows, ARGV[4] "1" to start a new upload
# Returns the rows staged so far, or -1 when the reference is gone.
STAGE = """
if redis.call('HGET', KEYS[1], 'incarnation') ~= ARGV[1] then return -1 end
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'staged_rows', 0)
end
redis.call('RPUSH', KEYS[2], ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'staged_rows', ARGV[3])
"""

# KEYS[1] meta, KEYS[2] log, KEYS[3] staging list, KEYS[4] pool list of the new generation
# ARGV[1] incarnation, ARGV[2] new generation, ARGV[3] now
# Makes the staged chunks the base (cursor 0), bumps the version, logs "pool" and trims the log
# before it. Returns {version, previous generation or ""}, or {-1, ""} gone,
# {-2, ""} nothing staged.
PUBLISH = """
if redis.call('HGET', KEYS[1], 'incarnation') ~= ARGV[1] then return {-1, ''} end
local rows = tonumber(redis.call('HGET', KEYS[1], 'staged_rows'))
if rows == 0 or redis.call('EXISTS', KEYS[3]) == 0 then return {-2, ''} end
redis.call('RENAME', KEYS[3], KEYS[4])
local previous = redis.call('HGET', KEYS[1], 'base_gen') or ''
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
local id = redis.call('XADD', KEYS[2], '*', 'kind', 'pool', 'version', version)
redis.call('XTRIM', KEYS[2], 'MINID', id)
redis.call('HSET', KEYS[1], 'n', rows, 'staged_rows', 0, 'updated_at', ARGV[3],
           'base_gen', ARGV[2], 'base_version', version, 'base_log_id', id, 'base_cursor', 0,
           'base_rows', redis.call('HGET', KEYS[1], 'rows') or 0)
return {version, previous}
"""

# KEYS[1] meta, KEYS[2] log, KEYS[3] the caller's idempotency key (Keys.idempotency)
# ARGV[1] incarnation, ARGV[2] rows (.npy), ARGV[3] row count, ARGV[4] key TTL seconds, ARGV[5] now,
# ARGV[6] digest of what it commits
# A key seen before with the same digest returns its version (replayed = 1) and only renews the
# key's expiry: that write makes a WAIT after the script cover the commit the key names.
# Otherwise the rows are appended to the log, the version bumped and "version:digest" stored
# under the key, all at once. (A key stored as a bare version predates digests: a retry.)
# A record of no rows (a share of a request that drew none) only stores its key, at the
# current version, so that the key reused with another request is refused as any other.
# Returns {version, replayed}, or {-1, 0} gone, {-2, 0} no pool, {-3, 0} more rows than the
# pool, {-4, 0} the key was used for another commit.
COMMIT = """
if redis.call('HGET', KEYS[1], 'incarnation') ~= ARGV[1] then return {-1, 0} end
local seen = redis.call('GET', KEYS[3])
if seen then
  local version, digest = string.match(seen, '^(%d+):(%x+)$')
  if version and digest ~= ARGV[6] then return {-4, 0} end
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  return {tonumber(version or seen), 1}
end
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
if n == 0 then return {-2, 0} end
if tonumber(ARGV[3]) > n then return {-3, 0} end
if tonumber(ARGV[3]) == 0 then
  local current = redis.call('HGET', KEYS[1], 'version')
  redis.call('SET', KEYS[3], current .. ':' .. ARGV[6], 'EX', ARGV[4])
  return {tonumber(current), 0}
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
local total = redis.call('HINCRBY', KEYS[1], 'rows', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'kind', 'commit', 'version', version, 'features', ARGV[2],
           'rows', total)
redis.call('HSET', KEYS[1], 'updated_at', ARGV[5])
redis.call('SET', KEYS[3], version .. ':' .. ARGV[6], 'EX', ARGV[4])
return {version, 0}
"""

# KEYS[1] meta, KEYS[2] log
# ARGV[1] incarnation, ARGV[2] snapshot generation (its pool and statistics already written),
# ARGV[3] its version, ARGV[4] the log id of that version, ARGV[5] its cursor, ARGV[6] the rows
# committed up to it
# Moves the base pointer forward unless the stored base is as new, or the log does not hold that
# version at that id (read from a primary that failed over before its replica had the entry),
# and trims the log before it. Returns {1, previous generation} when written, {0, ""} when refused.
SNAPSHOT = """
if redis.call('HGET', KEYS[1], 'incarnation') ~= ARGV[1] then return {0, ''} end
local current = tonumber(redis.call('HGET', KEYS[1], 'base_version') or '-1')
if current >= tonumber(ARGV[3]) then return {0, ''} end
local entry = redis.call('XRANGE', KEYS[2], ARGV[4], ARGV[4])[1]
if not entry then return {0, ''} end
local fields = entry[2]
local logged = nil
for i = 1, #fields, 2 do
  if fields[i] == 'version' then logged = fields[i + 1] end
end
if logged ~= ARGV[3] then return {0, ''} end
local previous = redis.call('HGET', KEYS[1], 'base_gen') or ''
redis.call('HSET', KEYS[1], 'base_gen', ARGV[2], 'base_version', ARGV[3],
           'base_log_id', ARGV[4], 'base_cursor', ARGV[5], 'base_rows', ARGV[6])
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[4])
return {1, previous}
"""

# KEYS[1] the shared build
# ARGV[1] its version, ARGV[2] base FD, then name, .npy bytes pairs
# Keeps the build unless one of its version or newer is kept. Returns 1 when kept.
SHARE_BUILD = """
local held = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if tonumber(ARGV[1]) <= held then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'base_fd', ARGV[2], unpack(ARGV, 3))
return 1
"""

# KEYS[1] a build lease; ARGV[1] its holder. Deletes the lease if the holder holds it.
RELEASE_BUILD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] the set of reference names, KEYS[2..] every key of the reference
# ARGV[1] its name
# Removes the keys and the name at once. Returns 1.
DELETE = """
redis.call('DEL', unpack(KEYS, 2))
redis.call('SREM', KEYS[1], ARGV[1])
return 1
"""

_CHUNK_BYTES = 32 * 1024 * 1024  # snapshot pool chunks: well under Redis' 512 MB bulk limit
_LOG_BATCH = 256  # stream entries per XRANGE round trip
_POOL_BATCH = 8  # pool chunks per LRANGE round trip
_CONSISTENT_READ_TRIES = 5


def _read_retry() -> Retry:
    """One quick retry covers a pooled connection that died with a Redis restart or a failover
    (reads are safe to send twice; so is a commit without replicas to wait for, since its
    idempotency key is checked first)."""
    return Retry(ExponentialBackoff(cap=0.2, base=0.05), 1)


def _connection_options(timeout_seconds: float, retry: Retry) -> dict[str, Any]:
    return {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": min(timeout_seconds, 1.0),
        "retry": retry,
        "health_check_interval": 30,
    }


def _address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class _Sentinels:
    """The sentinels' client, the primary they named last, and how many times they named
    another."""

    def __init__(self, client: Sentinel) -> None:
        self.client = client
        self.primary: tuple[str, int] | None = None
        self.changes = 0

    def named(self, primary: tuple[str, int]) -> None:
        if self.primary is not None and primary != self.primary:
            self.changes += 1
            log.warning("the sentinels name another Redis primary: %s:%d", *primary)
        self.primary = primary


class _FollowedPrimaryPool(SentinelConnectionPool):
    """A Sentinel pool that reports every primary the sentinels name to the shared
    :class:`_Sentinels` (the read and the write pool share them: either may meet a failover
    first)."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        self._sentinels: _Sentinels = kwargs.pop("sentinels")
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]

    async def get_master_address(self) -> Any:
        address = await super().get_master_address()  # type: ignore[no-untyped-call]
        self._sentinels.named((str(address[0]), int(address[1])))
        return address


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _log_kind(value: Any) -> LogKind:
    """A log entry's kind, as the scripts above write it."""
    kind = _text(value)
    if kind not in get_args(LogKind):
        raise StoreConflict(f"the log holds an entry of unknown kind {kind!r}")
    return cast(LogKind, kind)


class RedisStore(Store):
    """``client`` serves reads (and writes when no replica must acknowledge them); ``writer``
    is the pool, without command retries, that writes take their connection from when
    ``min_replicas`` > 0; ``sentinels`` name the primary of both (None: a fixed address)."""

    kind = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys | None = None,
        *,
        writer: aioredis.Redis | None = None,
        min_replicas: int = 0,
        replica_wait_seconds: float = 1.0,
        sentinels: _Sentinels | None = None,
    ) -> None:
        if min_replicas and writer is None:
            raise ValueError("waiting for replicas needs a writer client without retries")
        self._client = client
        self._writer = writer if writer is not None else client
        self._min_replicas = min_replicas
        self._wait_ms = max(1, round(replica_wait_seconds * 1000))
        self._sentinels = sentinels
        self._keys = keys or Keys()
        self._put_target = client.register_script(PUT_TARGET)
        self._stage = client.register_script(STAGE)
        self._publish = client.register_script(PUBLISH)
        self._commit = client.register_script(COMMIT)
        self._snapshot = client.register_script(SNAPSHOT)
        self._delete = client.register_script(DELETE)
        self._share_build = client.register_script(SHARE_BUILD)
        self._release_build = client.register_script(RELEASE_BUILD)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        min_replicas: int = 0,
        replica_wait_seconds: float = 1.0,
    ) -> RedisStore:
        """The Redis at ``url``; ``min_replicas`` of its replicas acknowledge each write."""
        client = aioredis.Redis.from_url(url, **_connection_options(timeout_seconds, _read_retry()))
        writer = None
        if min_replicas:
            writer = aioredis.Redis.from_url(
                url, **_connection_options(timeout_seconds, Retry(NoBackoff(), 0))
            )
        return cls(
            client,
            writer=writer,
            min_replicas=min_replicas,
            replica_wait_seconds=replica_wait_seconds,
        )

    @classmethod
    def from_sentinels(
        cls,
        addresses: Sequence[str],
        master_name: str,
        *,
        timeout_seconds: float = 5.0,
        password: str = "",
        sentinel_password: str = "",
        min_replicas: int = 1,
        replica_wait_seconds: float = 1.0,
    ) -> RedisStore:
        """The primary that the sentinels at ``addresses`` (``host:port``) monitor as
        ``master_name``, followed through failovers: a connection lost, or refused by a
        demoted primary (READONLY), is made again to the primary the sentinels name then."""
        sentinels = _Sentinels(
            Sentinel(
                [_address(address) for address in addresses],
                sentinel_kwargs={
                    "socket_timeout": timeout_seconds,
                    "socket_connect_timeout": min(timeout_seconds, 1.0),
                    "password": sentinel_password or None,
                },
            )
        )

        def pool_of(retry: Retry) -> aioredis.Redis:
            return cast(
                aioredis.Redis,
                sentinels.client.master_for(
                    master_name,
                    connection_pool_class=_FollowedPrimaryPool,
                    sentinels=sentinels,
                    password=password or None,
                    **_connection_options(timeout_seconds, retry),
                ),
            )

        writer = pool_of(Retry(NoBackoff(), 0)) if min_replicas else None
        return cls(
            pool_of(_read_retry()),
            writer=writer,
            min_replicas=min_replicas,
            replica_wait_seconds=replica_wait_seconds,
            sentinels=sentinels,
        )

    @property
    def epoch(self) -> int:
        """How many times the sentinels have named another primary (0 for a fixed address)."""
        return self._sentinels.changes if self._sentinels is not None else 0

    @asynccontextmanager
    async def _write(self, operation: str) -> AsyncIterator[aioredis.Redis]:
        """The client that the writes of one operation go through. With ``min_replicas``: one
        connection, no command retried on another (``WAIT`` would then cover only what came
        after), and on leaving without an error ``WAIT`` on it; too few replicas in time is
        :class:`StoreUnavailable` (the write is on the primary, unconfirmed: the caller sends
        it again, and idempotent writes answer the same)."""
        if not self._min_replicas:
            async with self._op(operation):
                yield self._client
            return
        connection = self._writer.client()
        async with self._op(operation):
            try:
                yield connection
                held = await connection.wait(self._min_replicas, self._wait_ms)
            finally:
                await connection.aclose()
        if held < self._min_replicas:
            log.warning(
                "%s: %d of the %d replicas required acknowledged the write within %d ms",
                operation,
                held,
                self._min_replicas,
                self._wait_ms,
            )
            raise StoreUnavailable(
                operation,
                f"{held} of the {self._min_replicas} replicas required hold the write",
            )

    @asynccontextmanager
    async def _op(self, operation: str) -> AsyncIterator[None]:
        """Translate connection-level failures into :class:`StoreUnavailable`."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(operation, f"redis unreachable: {exc}") from exc
        except RedisError as exc:
            # Any other answer (read-only replica, out of memory, busy script...) is also the
            # store not serving, not the reference's data: callers retry, nothing is isolated.
            log.warning("redis error during %s: %s", operation, exc)
            raise StoreUnavailable(operation, f"redis error: {exc}") from exc

    async def ping(self) -> None:
        async with self._op("ping"):
            await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
        if self._writer is not self._client:
            await self._writer.aclose()
        if self._sentinels is not None:
            await self._sentinels.client.aclose()

    async def list_names(self) -> list[str]:
        async with self._op("list"):
            names = await self._client.smembers(self._keys.names())
        return sorted(_text(name) for name in names)

    async def read_meta(self, name: str) -> ReferenceMeta | None:
        async with self._op("read_meta"):
            raw = await self._client.hgetall(self._keys.meta(name))
        return self._meta(name, raw) if raw else None

    @staticmethod
    def _meta(name: str, raw: dict[Any, Any]) -> ReferenceMeta:
        fields = {_text(key): _text(value) for key, value in raw.items()}
        return ReferenceMeta(
            name=name,
            d=int(fields["d"]),
            n=int(fields["n"]),
            version=int(fields["version"]),
            incarnation=fields["incarnation"],
            created_at=float(fields["created_at"]),
            updated_at=float(fields["updated_at"]),
            staged_rows=int(fields["staged_rows"]),
            feature_space=fields.get("feature_space", UNKNOWN_FEATURE_SPACE),
            rows=int(fields.get("rows", 0)),
        )

    async def put_target(
        self, name: str, target: Target, now: float, *, feature_space: str
    ) -> ReferenceMeta:
        keys = self._keys
        args: list[str | int | bytes] = [
            secrets.token_hex(8),
            len(target.mu),
            array_to_bytes(target.mu),
            array_to_bytes(target.sigma),
            repr(now),
            feature_space,
            UNKNOWN_FEATURE_SPACE,
        ]
        async with self._write("put_target") as connection:
            answer = await self._put_target(
                keys=[keys.meta(name), keys.target(name), keys.log(name)],
                args=args,
                client=connection,
            )
            if answer == -1:
                meta = await self.read_meta(name)
                d = meta.d if meta else "?"
                raise StoreConflict(
                    f"reference {name!r} has d={d}; delete it to change the dimension"
                )
            if answer == -2:
                meta = await self.read_meta(name)
                raise space_conflict(name, meta.feature_space if meta else "?", feature_space)
            await connection.sadd(keys.names(), name)
        meta = await self.read_meta(name)
        if meta is None:
            raise StoreConflict(f"reference {name!r} was deleted meanwhile")
        return meta

    async def read_target(self, name: str) -> Target:
        async with self._op("read_target"):
            values: Any = await self._client.hmget(self._keys.target(name), ["mu", "sigma"])
        mu, sigma = values
        if mu is None or sigma is None:
            raise StoreConflict(f"reference {name!r} no longer exists")
        return Target(array_from_bytes(mu), array_from_bytes(sigma))

    async def stage_pool(
        self, name: str, incarnation: str, chunk: np.ndarray, *, reset: bool
    ) -> int:
        keys = self._keys
        async with self._write("stage_pool") as connection:
            rows = await self._stage(
                keys=[keys.meta(name), keys.staging(name, incarnation)],
                args=[incarnation, array_to_bytes(chunk), len(chunk), "1" if reset else "0"],
                client=connection,
            )
            if rows == -1:
                raise StoreConflict(f"reference {name!r} no longer exists")
        return int(rows)

    async def publish_pool(self, name: str, incarnation: str, now: float) -> int:
        keys = self._keys
        generation = secrets.token_hex(8)
        async with self._write("publish_pool") as connection:
            version, previous = await self._publish(
                keys=[
                    keys.meta(name),
                    keys.log(name),
                    keys.staging(name, incarnation),
                    keys.pool(name, generation),
                ],
                args=[incarnation, generation, repr(now)],
                client=connection,
            )
            if version == -1:
                raise StoreConflict(f"reference {name!r} no longer exists")
            if version == -2:
                raise StoreConflict(f"reference {name!r} has no pool upload in progress")
            await self._drop_generation(name, _text(previous))
        return int(version)

    async def append_commit(self, name: str, incarnation: str, commit: CommitRecord) -> CommitAck:
        keys = self._keys
        rows = len(commit.features)
        async with self._write("commit") as connection:
            version, replayed = await self._commit(
                keys=[
                    keys.meta(name),
                    keys.log(name),
                    keys.idempotency(name, incarnation, commit.caller, commit.idempotency_key),
                ],
                args=[
                    incarnation,
                    array_to_bytes(commit.features),
                    rows,
                    commit.ttl_seconds,
                    repr(commit.now),
                    commit.digest,
                ],
                client=connection,
            )
            # Refusals wrote nothing: raised here, they skip the wait for replicas.
            if version == -1:
                raise StoreConflict(f"reference {name!r} no longer exists")
            if version == -2:
                raise StoreConflict(f"reference {name!r} has no pool yet")
            if version == -3:
                raise StoreConflict(f"{rows} rows exceed the pool size")
            if version == -4:
                raise IdempotencyConflict(commit.idempotency_key)
        return CommitAck(int(version), bool(replayed))

    async def seen_commit(
        self, name: str, incarnation: str, caller: str, key: str, now: float
    ) -> bool:
        # Redis expires the key itself.
        async with self._op("seen_commit"):
            held = await self._client.exists(self._keys.idempotency(name, incarnation, caller, key))
        return bool(held)

    async def read_base(self, name: str) -> Base:
        """The base pool; retried when a snapshot or publish swaps it while it is read."""
        for _ in range(_CONSISTENT_READ_TRIES):
            async with self._op("read_base"):
                raw = await self._client.hgetall(self._keys.meta(name))
                if not raw:
                    raise StoreConflict(f"reference {name!r} no longer exists")
                fields = {_text(key): _text(value) for key, value in raw.items()}
                if "base_gen" not in fields:
                    raise StoreConflict(f"reference {name!r} has no pool yet")
                generation = fields["base_gen"]
                chunks = await self._read_chunks(self._keys.pool(name, generation))
                stats = await self._client.hgetall(self._keys.statistics(name, generation))
                still = await self._client.hget(self._keys.meta(name), "base_gen")
            rows = sum(len(chunk) for chunk in chunks)
            if still is None or _text(still) != generation or rows != int(fields["n"]):
                continue  # swapped underneath: read again
            return Base(
                version=int(fields["base_version"]),
                pool=np.concatenate(chunks),
                cursor=int(fields["base_cursor"]),
                log_id=fields["base_log_id"],
                statistics=self._statistics(stats),
                rows=int(fields.get("base_rows", 0)),
            )
        raise StoreConflict(f"reference {name!r} kept changing while it was loaded; retry")

    async def _read_chunks(self, key: str) -> list[np.ndarray]:
        chunks: list[np.ndarray] = []
        start = 0
        while True:
            batch: Any = await self._client.lrange(key, start, start + _POOL_BATCH - 1)
            chunks.extend(array_from_bytes(item) for item in batch)
            if len(batch) < _POOL_BATCH:
                return chunks
            start += _POOL_BATCH

    @staticmethod
    def _statistics(raw: dict[Any, Any]) -> Statistics | None:
        if not raw:
            return None
        fields = {_text(key): value for key, value in raw.items()}
        total = array_from_bytes(fields["total"])
        return Statistics(
            total,
            array_from_bytes(fields["gram"]),
            int(_text(fields["n"])),
            # Snapshots written before the shift was kept hold raw sums: shift zero.
            array_from_bytes(fields["shift"]) if "shift" in fields else np.zeros_like(total),
        )

    async def read_log(self, name: str, after: str) -> list[LogEntry]:
        entries: list[LogEntry] = []
        start = f"({after}"
        async with self._op("read_log"):
            while True:
                batch: Any = await self._client.xrange(
                    self._keys.log(name), min=start, max="+", count=_LOG_BATCH
                )
                for log_id, raw in batch:
                    fields = {_text(key): value for key, value in raw.items()}
                    features = fields.get("features")
                    entries.append(
                        LogEntry(
                            log_id=_text(log_id),
                            version=int(_text(fields["version"])),
                            kind=_log_kind(fields["kind"]),
                            features=None if features is None else array_from_bytes(features),
                            rows=int(_text(fields.get("rows", b"0"))),
                        )
                    )
                if len(batch) < _LOG_BATCH:
                    return entries
                start = f"({_text(batch[-1][0])}"

    async def write_snapshot(self, name: str, incarnation: str, base: Base) -> bool:
        keys = self._keys
        generation = secrets.token_hex(8)
        pool_key = keys.pool(name, generation)
        rows_per_chunk = max(1, _CHUNK_BYTES // max(1, base.pool[0].nbytes))
        async with self._op("snapshot"):
            for start in range(0, len(base.pool), rows_per_chunk):
                chunk = base.pool[start : start + rows_per_chunk]
                await self._client.rpush(pool_key, array_to_bytes(chunk))
            if base.statistics is not None:
                await self._client.hset(
                    keys.statistics(name, generation),
                    mapping={
                        "total": array_to_bytes(base.statistics.total),
                        "gram": array_to_bytes(base.statistics.gram),
                        "n": base.statistics.n,
                        "shift": array_to_bytes(base.statistics.shift),
                    },
                )
            written, previous = await self._snapshot(
                keys=[keys.meta(name), keys.log(name)],
                args=[incarnation, generation, base.version, base.log_id, base.cursor, base.rows],
            )
            await self._drop_generation(name, _text(previous) if written else generation)
        return bool(written)

    async def _drop_generation(self, name: str, generation: str) -> None:
        if generation:
            await self._client.delete(
                self._keys.pool(name, generation), self._keys.statistics(name, generation)
            )

    async def claim_build(
        self, name: str, incarnation: str, holder: str, ttl_seconds: float
    ) -> bool:
        key = self._keys.build_lease(name, incarnation)
        lifetime = max(1, int(ttl_seconds * 1000))
        async with self._op("claim_build"):
            if await self._client.set(key, holder, nx=True, px=lifetime):
                return True
            # Held already: by this holder (renewed) or another.
            if await self._client.get(key) != holder.encode():
                return False
            await self._client.pexpire(key, lifetime)
        return True

    async def release_build(self, name: str, incarnation: str, holder: str) -> None:
        async with self._op("release_build"):
            await self._release_build(
                keys=[self._keys.build_lease(name, incarnation)], args=[holder]
            )

    async def share_build(self, name: str, incarnation: str, build: SharedBuild) -> bool:
        pairs: list[str | bytes] = []
        for field, array in build.arrays.items():
            pairs += [field, array_to_bytes(np.ascontiguousarray(array, dtype=np.float64))]
        async with self._op("share_build"):
            kept = await self._share_build(
                keys=[self._keys.build(name, incarnation)],
                args=[build.version, repr(float(build.base_fd)), *pairs],
            )
        return bool(kept)

    async def shared_build_version(self, name: str, incarnation: str) -> int | None:
        async with self._op("shared_build_version"):
            held = await self._client.hget(self._keys.build(name, incarnation), "version")
        return None if held is None else int(_text(held))

    async def read_shared_build(self, name: str, incarnation: str) -> SharedBuild | None:
        async with self._op("read_shared_build"):
            raw = await self._client.hgetall(self._keys.build(name, incarnation))
        if not raw:
            return None
        fields = {_text(key): value for key, value in raw.items() if isinstance(value, bytes)}
        version, base_fd = int(fields.pop("version")), float(fields.pop("base_fd"))
        arrays = {field: array_from_bytes(value) for field, value in fields.items()}
        return SharedBuild(version, base_fd, arrays)

    async def round_version(
        self, name: str, incarnation: str, round_id: str, proposal: int, ttl_seconds: int
    ) -> int:
        # SET NX GET: one command that keeps the first proposal and answers it (nil: ours).
        async with self._op("round"):
            held = await self._client.set(
                self._keys.round(name, incarnation, round_id),
                proposal,
                nx=True,
                get=True,
                ex=ttl_seconds,
            )
        return proposal if held is None else int(held)

    async def delete(self, name: str) -> bool:
        keys = self._keys
        async with self._op("delete"):
            raw = await self._client.hmget(keys.meta(name), ["incarnation", "base_gen"])
        incarnation, generation = (None if v is None else _text(v) for v in raw)
        if incarnation is None:
            return False
        doomed = [keys.meta(name), keys.target(name), keys.log(name)]
        doomed += [keys.staging(name, incarnation), keys.build(name, incarnation)]
        if generation:
            doomed += [keys.pool(name, generation), keys.statistics(name, generation)]
        async with self._write("delete") as connection:
            await self._delete(keys=[keys.names(), *doomed], args=[name], client=connection)
        return True
