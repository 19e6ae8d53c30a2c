"""Helpers of the service and hardening tests (importable from every test folder: ``tests/`` is on
the import path through its conftest): settings, ``.npy`` bodies, service processes with the test
tokens, and a small API client with one method per route in either wire format. The processes
themselves come from :mod:`support.launch`, which the demo and the benchmarks use too."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from reward_service.app import create_app
from reward_service.settings import Settings
from reward_service.store import Store
from reward_service.store.base import CommitRecord
from support.launch import RedisServer, ServiceProcess, free_port

__all__ = [
    "ADMIN_TOKEN",
    "SPACE",
    "TRAINER_TOKEN",
    "Api",
    "ApiAt",
    "D",
    "N",
    "RedisServer",
    "ServiceProcess",
    "clients",
    "free_port",
    "make_settings",
    "npy",
    "record",
    "service_process",
    "serving",
]

TRAINER_TOKEN = "trainer-token-for-tests-0001"
ADMIN_TOKEN = "admin-token-for-tests-000001"
D = 8
N = 64
#: A feature space identifier for tests that name one (the tests' features come from no network).
SPACE = "test/gaussian@sha256:0123456789abcdef/none"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tokens": (TRAINER_TOKEN,),
        "admin_tokens": (ADMIN_TOKEN,),
        "max_body_bytes": 4 * 1024 * 1024,
        "max_groups": 32,
        "max_group_size": 32,
    }
    values.update(overrides)
    return Settings(**values)


def service_process(redis_url: str, log_path: Path, **env: str) -> ServiceProcess:
    """A service child with the test tokens on ``redis_url`` ("": its own memory store)."""
    return ServiceProcess(
        log_path,
        {
            "DISTREWARD_REDIS_URL": redis_url,
            "DISTREWARD_TOKENS": TRAINER_TOKEN,
            "DISTREWARD_ADMIN_TOKENS": ADMIN_TOKEN,
            "DISTREWARD_REDIS_TIMEOUT_SECONDS": "1",
            **env,
        },
    )


def record(rows: np.ndarray, key: str, *, now: float = 1.0, caller: str = "") -> CommitRecord:
    """A commit for the store (keys kept 60 s) under ``caller``'s key ("": no token)."""
    return CommitRecord.of(rows, key, 60, now, caller=caller)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class Api:
    """Thin helper over an ``httpx.AsyncClient``: one method per route, either wire format."""

    def __init__(self, client: httpx.AsyncClient, token: str | None = ADMIN_TOKEN) -> None:
        self.client = client
        self.token = token

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        token = token or self.token
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return {**auth, **extra}

    async def send(
        self,
        method: str,
        path: str,
        array: np.ndarray | None = None,
        *,
        binary: bool = True,
        json_fields: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        """``array`` goes as ``.npy`` (``binary``) or under ``json_fields`` key ``"_array"``.

        The tests' targets are statistics that name no feature space: a ``PUT .../target``
        without ``params`` accepts feature space "unknown" (tests of the feature-space rules
        pass their own ``params``)."""
        if method == "PUT" and path.endswith("/target") and params is None:
            params = {"accept_unknown_feature_space": "true"}
        all_headers = self.headers(token, **(headers or {}))
        if array is not None and binary:
            all_headers["Content-Type"] = "application/x-npy"
            return await self.client.request(
                method, path, content=npy(array), params=params, headers=all_headers
            )
        if json_fields is not None or array is not None:
            body = dict(json_fields or {})
            return await self.client.request(
                method, path, json=body, params=params, headers=all_headers
            )
        return await self.client.request(method, path, params=params, headers=all_headers)

    async def create(self, name: str, rng: np.random.Generator, *, binary: bool = True) -> dict:
        """A reference with a target fitted to shifted features and a pool of N rows."""
        real = rng.normal(0.3, 1.0, size=(4 * N, D))
        pool = rng.normal(size=(N, D)).astype(np.float32)
        for part, rows in (("target", real), ("pool", pool)):
            path = f"/v1/references/{name}/{part}"
            json_fields = None if binary else {"features": rows.tolist()}
            r = await self.send("PUT", path, rows, binary=binary, json_fields=json_fields)
            assert r.status_code == 200, r.text
        return r.json()

    async def rewards(
        self, name: str, groups: np.ndarray, *, binary: bool = True, **params: Any
    ) -> httpx.Response:
        path = f"/v1/references/{name}/rewards"
        if binary:
            return await self.send("POST", path, groups, params=params)
        return await self.send(
            "POST", path, binary=False, json_fields={"groups": groups.tolist(), **params}
        )

    async def commit(
        self, name: str, rows: np.ndarray, key: str, *, binary: bool = True
    ) -> httpx.Response:
        path = f"/v1/references/{name}/commit"
        headers = {"Idempotency-Key": key}  # in its header, whatever the body's format
        if binary:
            return await self.send("POST", path, rows, headers=headers)
        return await self.send(
            "POST", path, binary=False, json_fields={"features": rows.tolist()}, headers=headers
        )

    async def info(self, name: str) -> httpx.Response:
        return await self.send("GET", f"/v1/references/{name}")


class ApiAt(Api):
    """The test API helper against one process's base URL."""

    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        super().__init__(client, ADMIN_TOKEN)
        self.base_url = base_url

    async def send(  # type: ignore[override]
        self, method: str, path: str, *args, **kwargs
    ) -> httpx.Response:
        return await super().send(method, self.base_url + path, *args, **kwargs)


@asynccontextmanager
async def serving(settings: Settings, store: Store | None = None) -> AsyncIterator[Api]:
    """An in-process app (lifespan driven explicitly, as a replica starting up) and its API
    helper; ``store`` shares a store object with another app (memory store: one "cluster")."""
    app = create_app(settings, store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield Api(client)


@asynccontextmanager
async def clients(*procs: ServiceProcess) -> AsyncIterator[list[Api]]:
    """One :class:`ApiAt` per process, over one shared HTTP client."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield [ApiAt(client, proc.url) for proc in procs]
