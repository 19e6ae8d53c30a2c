"""The store contract, run against both implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from service_support import SPACE, D, N, record

from reward_service.store import MemoryStore, Store, StoreConflict
from reward_service.store.base import Target
from reward_service.store.redis import RedisStore

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def store(store_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    backing: Store = (
        RedisStore.from_url(request.getfixturevalue("redis_url"))
        if store_kind == "redis"
        else MemoryStore()
    )
    yield backing
    await backing.close()


async def _published(store: Store, rng: np.random.Generator) -> str:
    meta = await store.put_target("r", Target(np.zeros(D), np.eye(D)), 1.0, feature_space=SPACE)
    assert (meta.d, meta.n, meta.version, meta.feature_space) == (D, 0, 0, SPACE)
    await store.stage_pool("r", meta.incarnation, rng.normal(size=(N // 2, D)), reset=True)
    rows = await store.stage_pool("r", meta.incarnation, rng.normal(size=(N // 2, D)), reset=False)
    assert rows == N
    assert await store.publish_pool("r", meta.incarnation, now=2.0) == 1
    return meta.incarnation


async def test_commits_are_logged_in_order_and_keys_apply_once(
    store: Store, rng: np.random.Generator
) -> None:
    incarnation = await _published(store, rng)
    rows = [rng.normal(size=(2, D)).astype(np.float32) for _ in range(3)]
    acks = [
        await store.append_commit("r", incarnation, record(r, f"k{i}", now=3.0))
        for i, r in enumerate(rows)
    ]
    assert [(a.version, a.replayed) for a in acks] == [(2, False), (3, False), (4, False)]
    assert await store.seen_commit("r", incarnation, "", "k0", now=4.0)
    assert not await store.seen_commit("r", incarnation, "", "k9", now=4.0)
    assert not await store.seen_commit("r", incarnation, "another-caller", "k0", now=4.0)
    again = await store.append_commit("r", incarnation, record(rows[0], "k0", now=4.0))
    assert (again.version, again.replayed) == (2, True)

    base = await store.read_base("r")
    assert base.version == 1 and base.cursor == 0 and base.pool.shape == (N, D)
    log = await store.read_log("r", base.log_id)
    assert [(e.kind, e.version) for e in log] == [("commit", 2), ("commit", 3), ("commit", 4)]
    for entry, sent in zip(log, rows, strict=True):
        np.testing.assert_array_equal(entry.features, sent)
        assert entry.features is not None and entry.features.dtype == np.float32
    assert await store.read_log("r", log[-1].log_id) == []
    meta = await store.read_meta("r")
    assert meta is not None and meta.version == 4 and meta.n == N


async def test_refusals(store: Store, rng: np.random.Generator) -> None:
    meta = await store.put_target("r", Target(np.zeros(D), np.eye(D)), 1.0, feature_space=SPACE)
    with pytest.raises(StoreConflict, match="no pool"):
        await store.append_commit("r", meta.incarnation, record(np.zeros((1, D)), "k", now=1.0))
    with pytest.raises(StoreConflict, match="no pool upload"):
        await store.publish_pool("r", meta.incarnation, now=1.0)
    with pytest.raises(StoreConflict, match="d="):
        await store.put_target(
            "r", Target(np.zeros(D + 1), np.eye(D + 1)), 1.0, feature_space=SPACE
        )
    with pytest.raises(StoreConflict, match=f"holds features of '{SPACE}'.*'other/space'"):
        await store.put_target("r", Target(np.ones(D), np.eye(D)), 2.0, feature_space="other/space")
    kept = await store.read_meta("r")
    assert kept is not None and (kept.feature_space, kept.updated_at) == (SPACE, 1.0)
    np.testing.assert_array_equal((await store.read_target("r")).mu, np.zeros(D))
    incarnation = await _published(store, rng)
    with pytest.raises(StoreConflict, match="exceed"):
        await store.append_commit("r", incarnation, record(np.zeros((N + 1, D)), "k", now=1.0))
    with pytest.raises(StoreConflict, match="no longer exists"):
        await store.append_commit("r", "another-life", record(np.zeros((1, D)), "k", now=1.0))


async def test_snapshots_move_the_base_forward_only(store: Store, rng: np.random.Generator) -> None:
    incarnation = await _published(store, rng)
    for i in range(3):
        rows = rng.normal(size=(2, D))
        await store.append_commit("r", incarnation, record(rows, f"k{i}", now=1.0))
    log = await store.read_log("r", (await store.read_base("r")).log_id)
    base = await store.read_base("r")
    snapshot = type(base)(3, rng.normal(size=(N, D)), 4, log[1].log_id, None)
    assert await store.write_snapshot("r", incarnation, snapshot)
    assert not await store.write_snapshot("r", incarnation, snapshot)
    stored = await store.read_base("r")
    assert (stored.version, stored.cursor) == (3, 4)
    np.testing.assert_array_equal(stored.pool, snapshot.pool)
    assert [e.version for e in await store.read_log("r", stored.log_id)] == [4]


async def test_target_change_with_a_pool_is_a_version(
    store: Store, rng: np.random.Generator
) -> None:
    await _published(store, rng)
    meta = await store.put_target("r", Target(np.ones(D), 2 * np.eye(D)), 5.0, feature_space=SPACE)
    assert meta.version == 2 and meta.feature_space == SPACE
    target = await store.read_target("r")
    np.testing.assert_array_equal(target.sigma, 2 * np.eye(D))
    log = await store.read_log("r", (await store.read_base("r")).log_id)
    assert [(e.kind, e.version) for e in log] == [("target", 2)]


async def test_delete(store: Store, rng: np.random.Generator) -> None:
    await _published(store, rng)
    assert await store.list_names() == ["r"]
    assert await store.delete("r")
    assert not await store.delete("r")
    assert await store.read_meta("r") is None
    assert await store.list_names() == []


async def test_a_redis_record_without_a_feature_space_is_unknown(redis_url: str) -> None:
    """References stored before feature spaces were recorded keep working as "unknown"."""
    store = RedisStore.from_url(redis_url)
    try:
        await store.put_target("r", Target(np.zeros(D), np.eye(D)), 1.0, feature_space=SPACE)
        await store._client.hdel(store._keys.meta("r"), "feature_space")  # an older record
        meta = await store.read_meta("r")
        assert meta is not None and meta.feature_space == "unknown"
        with pytest.raises(StoreConflict, match="'unknown'"):
            await store.put_target("r", Target(np.ones(D), np.eye(D)), 2.0, feature_space=SPACE)
        again = await store.put_target(
            "r", Target(np.ones(D), np.eye(D)), 3.0, feature_space="unknown"
        )
        assert again.updated_at == 3.0
    finally:
        await store.close()


async def test_the_memory_store_forgets_expired_keys(rng: np.random.Generator) -> None:
    """A key past its TTL is a new commit (with any rows), and it is dropped, so the key table
    does not grow by one entry per commit for ever (Redis expires its keys itself)."""
    store = MemoryStore()
    incarnation = await _published(store, rng)
    for i in range(3):
        await store.append_commit("r", incarnation, record(np.zeros((1, D)), f"k{i}", now=0.0))
    later = await store.append_commit("r", incarnation, record(np.ones((1, D)), "k0", now=61.0))
    assert later.replayed is False and later.version == 5
    assert list(store._refs["r"].idempotency) == [("", "k0")]  # k1, k2 expired, were dropped
