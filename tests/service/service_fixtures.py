"""Fixtures shared by the service and hardening tests: Redis, apps over both stores driven
in-process (lifespan included), and service processes. ``tests/service/conftest.py`` and
``tests/hardening/conftest.py`` import them from here.

Nothing is skipped silently: without ``redis-server`` the Redis fixtures fail and say how to
install it (``bash scripts/install_redis.sh``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from service_support import Api, RedisServer, ServiceProcess, make_settings

from reward_service.app import create_app
from reward_service.settings import Settings

__all__ = [
    "api",
    "redis_server",
    "redis_url",
    "rng",
    "service_pair_factory",
    "settings",
    "store_kind",
]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server, emptied for this test."""
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(store_kind: str, request: pytest.FixtureRequest) -> Settings:
    url = request.getfixturevalue("redis_url") if store_kind == "redis" else ""
    return make_settings(redis_url=url)


@pytest_asyncio.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """An in-process app (lifespan driven explicitly) over the parametrised store."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield Api(client)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def service_pair_factory(tmp_path: Path) -> Iterator[Any]:
    """Starts service processes on a given Redis URL; stops them after the test."""
    started: list[ServiceProcess] = []

    def start(redis_url: str, count: int = 2, **env: str) -> list[ServiceProcess]:
        procs = [
            ServiceProcess(redis_url, tmp_path / f"service-{len(started) + i}.log", **env)
            for i in range(count)
        ]
        started.extend(procs)
        for proc in procs:
            proc.wait_ready()
        return procs

    yield start
    for proc in started:
        proc.stop()
