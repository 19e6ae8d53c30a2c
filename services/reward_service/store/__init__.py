"""State behind one interface: :class:`MemoryStore` (embedded default) or :class:`RedisStore`."""

from __future__ import annotations

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


def open_store(redis_url: str, timeout_seconds: float) -> Store:
    """The store a URL names: Redis for ``redis://`` / ``rediss://``, memory for ``""``."""
    if not redis_url:
        return MemoryStore()
    from .redis import RedisStore  # imported here so the memory store needs no redis package

    return RedisStore.from_url(redis_url, timeout_seconds=timeout_seconds)
