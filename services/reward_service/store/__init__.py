"""State behind one interface: :class:`MemoryStore` (embedded default) or :class:`RedisStore`.

* ``base`` — the :class:`Store` interface and its records (meta, target, base, log entries,
  commits); read it first: it says what a store must keep and what must be atomic.
* ``memory`` — one process, atomic under asyncio; ``redis`` — shared by replicas, every version
  change one Lua script; ``keys`` builds every Redis key; ``codec`` turns arrays into bytes.

A new store implements :class:`Store` in a module here and is chosen in :func:`open_store`;
``tests/service/store/test_service_store.py`` runs the store contract against each. Stores know
arrays, bytes and versions, never HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Store, StoreConflict, StoreError, StoreUnavailable
from .memory import MemoryStore

__all__ = [
    "MemoryStore",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]


def open_store(
    redis_url: str,
    timeout_seconds: float,
    *,
    sentinels: Sequence[str] = (),
    master_name: str = "",
    password: str = "",
    sentinel_password: str = "",
    min_replicas: int = 0,
    replica_wait_seconds: float = 1.0,
) -> Store:
    """The store a URL names: Redis for ``redis://`` / ``rediss://``, memory for ``""``; with
    ``sentinels`` (``host:port``), the primary they monitor as ``master_name``. Writes are
    acknowledged once ``min_replicas`` replicas hold them."""
    if not redis_url and not sentinels:
        return MemoryStore()
    from .redis import RedisStore  # imported here so the memory store needs no redis package

    if sentinels:
        return RedisStore.from_sentinels(
            sentinels,
            master_name,
            timeout_seconds=timeout_seconds,
            password=password,
            sentinel_password=sentinel_password,
            min_replicas=min_replicas,
            replica_wait_seconds=replica_wait_seconds,
        )
    return RedisStore.from_url(
        redis_url,
        timeout_seconds=timeout_seconds,
        min_replicas=min_replicas,
        replica_wait_seconds=replica_wait_seconds,
    )
