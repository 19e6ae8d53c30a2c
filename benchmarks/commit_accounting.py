"""Whether every commit a run of keyed requests was acknowledged is in Redis once, from what
the store holds after the run: the idempotency records, the log and the pool rows.

Each request of the run carries fresh rows and a key of its own, so its rows identify it: a
row's float32 bytes are hashed when it is sent and found again in the stored log and pool
(stored as float64, exact). Checked:

- ``acknowledged_keys_recorded``: every acknowledged key is recorded in Redis at the version it
  was acknowledged with;
- ``one_commit_per_version``: the run's recorded keys (acknowledged or not: a request whose
  answer was lost may have been applied) hold every version from the run's first to the stored
  one, each once, so that nothing else was appended and nothing twice;
- ``log_entries_hold_their_rows``: every commit of the run still in the log stream (snapshots
  trim it) holds rows of the request whose key has its version, each once, as many as its answer
  acknowledged;
- ``pool_holds_committed_rows_once``: no committed row is in the stored pool twice, and every
  acknowledged commit whose rows cannot have been turned over yet (the rows committed after it
  and its own fit in the pool) has all its rows there.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import numpy as np
import redis.asyncio as aioredis

from reward_service.store.base import LogEntry

__all__ = ["KeyedCall", "recorded_versions", "row_digests", "verify_commits"]


def row_digests(rows: np.ndarray) -> list[bytes]:
    """One digest per row of its float32 bytes."""
    return [
        hashlib.blake2b(row.tobytes(), digest_size=16).digest()
        for row in np.ascontiguousarray(rows, dtype=np.float32)
    ]


@dataclass
class KeyedCall:
    """One request with a commit share: its idempotency key, the digests of the rows it sent,
    and what its answer acknowledged (``version`` None: no answer, or one without a commit)."""

    key: str
    rows: list[bytes]
    version: int | None = None
    committed_rows: int | None = None


async def recorded_versions(redis_url: str, key_prefix: str) -> dict[str, int]:
    """The version each idempotency key starting with ``key_prefix`` is recorded with in Redis
    (the record's value is ``version:digest``; the key ends the Redis key's name)."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        names = [name async for name in client.scan_iter(match=f"*:{key_prefix}*", count=1000)]
        # decode_responses: names and values are str
        values = cast(list[str | None], await client.mget(names)) if names else []
    finally:
        await client.aclose()
    recorded: dict[str, int] = {}
    for name, value in zip(names, values, strict=True):
        if value is not None:
            recorded[name.rsplit(":", 1)[1]] = int(value.split(":", 1)[0])
    return recorded


def verify_commits(
    calls: list[KeyedCall],
    recorded: dict[str, int],
    *,
    start_version: int,
    stored_version: int,
    log: Iterable[LogEntry],
    pool: np.ndarray,
    most_rows_per_commit: int,
) -> tuple[dict[str, bool], dict[str, int]]:
    """The checks of the module docstring for ``calls`` made between ``start_version`` and
    ``stored_version``, and what they looked at (log entries, pool rows found)."""
    by_key = {call.key: call for call in calls}
    acknowledged = [call for call in calls if call.version is not None]
    mine = {key: version for key, version in recorded.items() if key in by_key}
    owner = {version: key for key, version in mine.items()}

    committed_in_log: dict[str, int] = {}
    log_ok = True
    for entry in log:
        if entry.kind != "commit" or not start_version < entry.version <= stored_version:
            continue
        key = owner.get(entry.version)
        if key is None or entry.features is None:
            log_ok = False
            continue
        digests = row_digests(entry.features)
        sent = set(by_key[key].rows)
        expected = by_key[key].committed_rows
        log_ok &= len(set(digests)) == len(digests) and set(digests) <= sent
        log_ok &= expected is None or expected == len(digests)
        committed_in_log[key] = len(digests)

    in_pool = Counter(row_digests(pool))
    found = 0
    # A request without a recorded key committed nothing.
    pool_ok = not any(
        digest in in_pool for call in calls if call.key not in mine for digest in call.rows
    )
    newer_rows = 0  # rows committed after the commit looked at, at most
    for version in sorted(owner, reverse=True):
        call = by_key[owner[version]]
        present = [in_pool[digest] for digest in call.rows if digest in in_pool]
        found += len(present)
        pool_ok &= all(count == 1 for count in present)
        rows = (
            committed_in_log.get(call.key) if call.committed_rows is None else call.committed_rows
        )
        if rows is None:  # not acknowledged, and trimmed from the log: a bound will do
            pool_ok &= len(present) <= most_rows_per_commit
            newer_rows += most_rows_per_commit
            continue
        newer_rows += rows
        if newer_rows <= len(pool):
            pool_ok &= len(present) == rows

    checks = {
        "acknowledged_keys_recorded": all(
            recorded.get(call.key) == call.version for call in acknowledged
        ),
        "one_commit_per_version": (
            sorted(mine.values()) == list(range(start_version + 1, stored_version + 1))
        ),
        "log_entries_hold_their_rows": log_ok,
        "pool_holds_committed_rows_once": pool_ok,
    }
    figures = {
        "keys_sent": len(calls),
        "keys_acknowledged": len(acknowledged),
        "keys_recorded": len(mine),
        "log_entries_checked": len(committed_in_log),
        "committed_rows_in_pool": found,
    }
    return checks, figures
