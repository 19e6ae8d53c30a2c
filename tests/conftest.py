"""Fixtures shared by several test folders: a real Redis, in-process apps over both stores and
service processes (service and hardening tests), and the demo's service (the client's trainer
tests and the feature tests). Helpers the tests import live in ``tests/service_support.py``.

The service is imported inside the fixtures, so that the client's tests still collect where
only the client is installed. Nothing is skipped silently: without ``redis-server`` the Redis
fixtures fail and say how to install it (``bash scripts/install_redis.sh``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from service_support import Api

    from examples.digits.service import Endpoint
    from reward_service.settings import Settings
    from support.launch import RedisServer, ServiceProcess


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A ``python -m reward_service`` child with the in-memory store (admin token), started by
    the demo's launcher (the client's trainer tests and the feature tests use it; other folders
    define their own)."""
    from examples.digits.service import reward_service

    if os.environ.get("DISTREWARD_URL"):
        pytest.skip("DISTREWARD_URL points at an outside service; these tests start their own")
    with reward_service(tmp_path_factory.mktemp("service") / "service.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    from support.launch import RedisServer

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
    from service_support import make_settings

    url = request.getfixturevalue("redis_url") if store_kind == "redis" else ""
    return make_settings(redis_url=url)


@pytest_asyncio.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """An in-process app (lifespan driven explicitly) over the parametrised store."""
    from service_support import serving

    async with serving(settings) as api:
        yield api


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def service_pair_factory(tmp_path: Path) -> Iterator[Callable[..., list[ServiceProcess]]]:
    """Starts service processes on a given Redis URL; stops them after the test."""
    from service_support import service_process

    started: list[ServiceProcess] = []

    def start(redis_url: str, count: int = 2, **env: str) -> list[ServiceProcess]:
        procs = [
            service_process(redis_url, tmp_path / f"service-{len(started) + i}.log", **env)
            for i in range(count)
        ]
        started.extend(procs)
        for proc in procs:
            proc.wait_ready()
        return procs

    yield start
    for proc in started:
        proc.stop()
