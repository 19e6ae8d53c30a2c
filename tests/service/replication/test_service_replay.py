"""Two apps in one process over one store behave as two replicas: they catch up from the log,
across snapshots that trimmed it, and see deletes and target changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import numpy as np
import pytest
from service_support import Api, D, make_settings

from reward_service.app import create_app
from reward_service.settings import Settings
from reward_service.store import MemoryStore, Store

pytestmark = pytest.mark.asyncio


@asynccontextmanager
async def replicas(settings: Settings, count: int) -> AsyncIterator[list[Api]]:
    """``count`` apps; with the memory store they share one instance (one process's state)."""
    shared: Store | None = None if settings.redis_url else MemoryStore()
    async with AsyncExitStack() as stack:
        apis = []
        for _ in range(count):
            app = create_app(settings, store=shared)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s")
            )
            apis.append(Api(client))
        yield apis


@pytest.fixture
def snapshot_settings(settings: Settings) -> Settings:
    return make_settings(redis_url=settings.redis_url, snapshot_every=10)


async def test_a_lagging_replica_catches_up_across_snapshots(
    snapshot_settings: Settings, rng: np.random.Generator
) -> None:
    async with replicas(snapshot_settings, 2) as (a, b):
        created = await a.create("lag", rng)
        assert (await b.info("lag")).json()["version"] == created["version"]
        for step in range(35):  # snapshots at 10, 20, 30 trim the log under b
            answer = await a.commit("lag", rng.normal(size=(3, D)), f"c{step}")
            assert answer.status_code == 200
        latest = (await a.info("lag")).json()
        seen = (await b.info("lag")).json()
        assert seen["version"] == latest["version"] == created["version"] + 35
        assert seen["base_fd"] == pytest.approx(latest["base_fd"], rel=1e-9)
        groups = rng.normal(size=(3, 4, D))
        from_a = (await a.rewards("lag", groups, seed=3)).json()["rewards"]
        from_b = (await b.rewards("lag", groups, seed=3)).json()["rewards"]
        np.testing.assert_allclose(from_a, from_b, rtol=1e-9, atol=1e-12)


async def test_target_changes_and_deletes_reach_other_replicas(
    settings: Settings, rng: np.random.Generator
) -> None:
    async with replicas(settings, 2) as (a, b):
        created = await a.create("t", rng)
        await b.info("t")
        changed = await a.send("PUT", "/v1/references/t/target", rng.normal(size=(50, D)))
        seen = (await b.info("t")).json()
        assert seen["version"] == changed.json()["version"] == created["version"] + 1
        assert seen["base_fd"] == pytest.approx(changed.json()["base_fd"], rel=1e-12)

        assert (await a.send("DELETE", "/v1/references/t")).status_code == 204
        assert (await b.info("t")).status_code == 404
        again = await b.create("t", rng)  # same name, new incarnation
        assert again["version"] == 1
        assert (await a.info("t")).json()["base_fd"] == again["base_fd"]
