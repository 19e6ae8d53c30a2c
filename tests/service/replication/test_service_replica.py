"""The replica's catch-up, driven directly over a memory store."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from service_support import SPACE, D, N, record

from reward_service.engine.statistics import ShiftedSums
from reward_service.replication.replica import Replica
from reward_service.store import MemoryStore
from reward_service.store.base import LogEntry, Target

pytestmark = pytest.mark.asyncio


class GatedStore(MemoryStore):
    """Holds ``read_log`` until ``gate`` is set, to catch a replica mid-catch-up."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    async def read_log(self, name: str, after: str) -> list[LogEntry]:
        await self.gate.wait()
        return await super().read_log(name, after)


async def _reference(store: MemoryStore, rng: np.random.Generator) -> str:
    meta = await store.put_target("r", Target(np.zeros(D), np.eye(D)), 0.0, feature_space=SPACE)
    await store.stage_pool("r", meta.incarnation, rng.normal(size=(N, D)), reset=True)
    await store.publish_pool("r", meta.incarnation, now=0.0)
    return meta.incarnation


async def test_requests_keep_the_held_version_while_a_catch_up_runs(
    rng: np.random.Generator,
) -> None:
    store = GatedStore()
    incarnation = await _reference(store, rng)
    replica = Replica("r", store, "cpu")
    assert (await replica.sync()).version == 1
    await store.append_commit("r", incarnation, record(rng.normal(size=(2, D)), "k", now=0.0))

    store.gate.clear()
    catching_up = asyncio.create_task(replica.sync())
    await asyncio.sleep(0.01)  # let it take the lock and block in read_log
    assert not catching_up.done()
    held = await replica.sync(wait=False)
    assert held.version == 1  # served at once, from the version held

    store.gate.set()
    assert (await catching_up).version == 2
    assert (await replica.sync(wait=False)).version == 2


async def test_snapshot_round_trip_is_exact_and_compact(rng: np.random.Generator) -> None:
    store = MemoryStore()
    incarnation = await _reference(store, rng)
    replica = Replica("r", store, "cpu")
    await replica.sync()
    rows = rng.normal(size=(3, D)).astype(np.float32)
    await store.append_commit("r", incarnation, record(rows, "k", now=0.0))
    await replica.sync()
    base = await replica.snapshot()
    assert base is not None and base.version == 2 and base.cursor == 3
    assert base.pool.dtype == np.float64  # the float64 upload does not fit float32 exactly
    assert await store.write_snapshot("r", incarnation, base)
    assert not await store.write_snapshot("r", incarnation, base)  # not newer: refused

    fresh = await Replica("r", store, "cpu").sync()
    assert fresh.engine is not None and replica.state.engine is not None
    np.testing.assert_array_equal(fresh.engine.pool(), replica.state.engine.pool())
    assert fresh.engine.base_fd == pytest.approx(replica.state.engine.base_fd, rel=1e-12)


async def test_a_replica_loads_a_snapshot_with_its_statistics(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()
    incarnation = await _reference(store, rng)
    replica = Replica("r", store, "cpu")
    await replica.sync()
    await store.append_commit("r", incarnation, record(rng.normal(size=(3, D)), "k", now=0.0))
    await replica.sync()
    base = await replica.snapshot()
    assert base is not None and base.statistics is not None
    assert await store.write_snapshot("r", incarnation, base)

    passes: list[int] = []
    of_rows = ShiftedSums.of_rows.__func__  # type: ignore[attr-defined]

    def counted(cls: type[ShiftedSums], rows: torch.Tensor) -> ShiftedSums:
        passes.append(len(rows))
        return of_rows(cls, rows)  # type: ignore[no-any-return]

    monkeypatch.setattr(ShiftedSums, "of_rows", classmethod(counted))
    fresh = await Replica("r", store, "cpu").sync()
    assert passes == []  # no pass over the rows: the snapshot's statistics were taken
    assert fresh.engine is not None and replica.state.engine is not None
    held, loaded = replica.state.engine.statistics(), fresh.engine.statistics()
    np.testing.assert_array_equal(loaded.gram, held.gram)
    assert fresh.engine.base_fd == pytest.approx(replica.state.engine.base_fd, rel=1e-12)


async def test_a_replica_behind_by_many_commits_applies_them_in_one_call_with_every_base_fd(
    rng: np.random.Generator,
) -> None:
    # Commits made elsewhere while this replica looked away: one catch-up applies the run in
    # a single call of the engine, and the base FD it keeps for each version (what a retried
    # commit's answer names) is the one a replica following every commit computes.
    store = MemoryStore()
    incarnation = await _reference(store, rng)
    behind, following = Replica("r", store, "cpu"), Replica("r", store, "cpu")
    await behind.sync()
    await following.sync()
    calls: list[int] = []
    engine = behind.state.engine
    assert engine is not None
    append_many = engine.append_many

    def counted(batches: list[np.ndarray]) -> object:
        calls.append(len(batches))
        return append_many(batches)

    engine.append_many = counted  # type: ignore[method-assign]
    for step in range(5):
        rows = rng.normal(0.1, 1.0, size=(1 + step % 2, D))
        await store.append_commit("r", incarnation, record(rows, f"k{step}", now=0.0))
        await following.sync()
    assert (await behind.sync()).version == 6
    assert calls == [5]
    for version in range(2, 7):
        kept, expected = behind.base_fd_at(version), following.base_fd_at(version)
        assert kept is not None and expected is not None
        assert kept == pytest.approx(expected, rel=1e-12)
    await behind.close()
    await following.close()
