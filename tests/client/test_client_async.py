"""The async client used natively: ``async with``, many requests in flight on one client."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
from client_fakes import FakeService, commit_json, config, error, ok

from reward_client import AsyncRewardClient, ServiceUnavailable


def test_async_context_manager_and_concurrency():
    fake = FakeService(ok(commit_json()))

    async def main() -> list[str]:
        transport = httpx.MockTransport(fake)
        async with AsyncRewardClient(config=config(), transport=transport) as client:
            results = await asyncio.gather(
                *(client.commit("ref", np.ones((2, 3))) for _ in range(8))
            )
        return [r.idempotency_key for r in results]

    keys = asyncio.run(main())
    assert len(set(keys)) == 8 and fake.count == 8


def test_async_retries_then_raises():
    fake = FakeService(error(503, **{"Retry-After": "0"}))

    async def main() -> None:
        transport = httpx.MockTransport(fake)
        async with AsyncRewardClient(config=config(retries=2), transport=transport) as client:
            await client.info("ref")

    try:
        asyncio.run(main())
    except ServiceUnavailable as exc:
        assert exc.status_code == 503
    else:
        raise AssertionError("expected ServiceUnavailable")
    assert fake.count == 3
