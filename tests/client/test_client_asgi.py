"""The pluggable transport: the async client against the service app in-process, over ASGI.

The test (not the client) imports the service, to hand its app to ``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
import importlib.util

import httpx
import numpy as np
import pytest

import reward_client as rc

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("reward_service") is None
    or importlib.util.find_spec("fastapi") is None,
    reason="the service (extra 'service') is not installed",
)

ADMIN = "admin-token-asgi-0123456789"


def test_async_client_over_asgi_transport():
    from reward_service.app import create_app
    from reward_service.settings import Settings

    app = create_app(Settings(env="production", admin_tokens=(ADMIN,), device="cpu"))
    rng = np.random.default_rng(0)

    async def main() -> rc.RewardBatch:
        async with app.router.lifespan_context(app):  # ASGITransport does not run lifespan
            transport = httpx.ASGITransport(app=app)
            async with rc.AsyncRewardClient("http://app", token=ADMIN, transport=transport) as c:
                features = rng.normal(size=(100, 4))
                await c.put_target("asgi", features=features, accept_unknown_feature_space=True)
                await c.put_pool("asgi", rng.normal(size=(60, 4)), chunk_rows=25)
                return await c.rewards("asgi", rng.normal(size=(3, 2, 4)), seed=1)

    batch = asyncio.run(main())
    assert len(batch) == 3 and batch.seed == 1
    np.testing.assert_allclose(batch.rewards, batch.base_fd - batch.fds, rtol=1e-9)
