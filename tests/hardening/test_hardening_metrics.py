"""``/metrics`` stays bounded whatever callers send: request labels come from fixed sets (route
templates or ``unmatched``, standard methods or ``other``), and a deleted reference's series go
with it. Requests are driven straight into the ASGI app, so 10,000 of them take seconds."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import pytest_asyncio
from fastapi import FastAPI
from service_support import Api, D
from starlette.types import Message

from reward_service.app import create_app
from reward_service.settings import Settings

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def _request(app: FastAPI, method: str, path: str) -> int:
    """One unauthenticated request with an empty body; its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"service")],
        "client": ("127.0.0.1", 1234),
        "server": ("service", 80),
    }
    status = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def _random_method(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
    if roll < 0.33:
        return "X" * 8192  # 8 KB method names
    return "X" + rng.randbytes(rng.randint(1, 12)).hex().upper()


def _random_path(rng: random.Random) -> str:
    name = rng.randbytes(6).hex()
    return rng.choice(
        [
            f"/{name}",
            f"/{name}/{rng.randbytes(3).hex()}",
            f"/v1/references/{name}",
            f"/v1/references/{name}/{rng.choice(['rewards', 'commit', 'fd', 'pool', name])}",
            "/healthz",
            f"/docs-assets/{name}",
        ]
    )


def _series(text: str) -> set[str]:
    """The series (name and labels) of an exposition, values left out."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if not line.startswith("#")}


async def _typical_traffic(api: Api, rng: np.random.Generator) -> None:
    """What a working service has served before: a reference, rewards, commits, reads."""
    await api.create("ref", rng)
    assert (await api.rewards("ref", rng.normal(size=(2, 4, D)))).status_code == 200
    assert (await api.commit("ref", rng.normal(size=(4, D)), "key-1")).status_code == 200
    fd = await api.send("POST", "/v1/references/ref/fd", rng.normal(size=(16, D)))
    assert fd.status_code == 200
    for path in ("/v1/references", "/v1/references/ref", "/readyz", "/healthz", "/metrics"):
        assert (await api.send("GET", path)).status_code == 200


async def test_random_methods_and_paths_leave_metrics_bounded(
    app: FastAPI, rng: np.random.Generator
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service"
    ) as client:
        own = Api(client)
        await _typical_traffic(own, rng)
        before = (await client.get("/metrics")).text

        draws = random.Random(0)
        statuses = {
            await _request(app, _random_method(draws), _random_path(draws)) for _ in range(10_000)
        }
        assert statuses <= {200, 401, 404, 405, 422}, statuses  # /healthz, or refused; no 500
        after = (await client.get("/metrics")).text
        assert len(after) <= 1.1 * len(before), (len(before), len(after))

        for _ in range(1_000):  # more of the same adds no series at all
            await _request(app, _random_method(draws), _random_path(draws))
        again = (await client.get("/metrics")).text
        assert _series(again) == _series(after)
        methods = set(re.findall(r'^distreward_requests_total\{.*?,method="([^"]*)"', again, re.M))
        assert methods == {"GET", "POST", "PUT", "DELETE", "other"}  # the routes' and "other"


async def test_a_deleted_reference_leaves_no_series(api: Api, rng: np.random.Generator) -> None:
    await _typical_traffic(api, rng)
    assert 'reference="ref"' in (await api.send("GET", "/metrics")).text
    assert (await api.send("DELETE", "/v1/references/ref")).status_code == 204
    assert 'reference="ref"' not in (await api.send("GET", "/metrics")).text
