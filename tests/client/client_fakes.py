"""A scripted stand-in for the service and helpers to script it.

Most client behaviour (retries, errors, encodings) is identical for the sync and the async
client by construction; `BlockingFacade` lets one test body drive either.
"""

from __future__ import annotations

import asyncio
import inspect
import io
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from reward_client import AsyncRewardClient, ClientConfig

TOKEN = "test-token-0123456789"

Reply = httpx.Response | type[httpx.RequestError] | Callable[[httpx.Request], httpx.Response]


class FakeService:
    """Answers each request with the next scripted reply (the last one repeats) and keeps
    every request for the test to inspect. A reply is a response, an httpx error class to
    raise, or a function of the request."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, type):
            raise reply("scripted failure", request=request)
        if isinstance(reply, httpx.Response):
            return reply
        return reply(request)

    @property
    def count(self) -> int:
        return len(self.requests)


def config(**overrides: Any) -> ClientConfig:
    """Test settings: retries with backoffs too short to slow the suite down."""
    base = {
        "base_url": "http://service.test",
        "token": TOKEN,
        "retries": 3,
        "backoff": 0.001,
        "max_backoff": 0.01,
    }
    return ClientConfig(**{**base, **overrides})


def info_json(name: str = "ref", *, n: int = 100, d: int = 4, version: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "d": d,
        "n": n,
        "version": version,
        "base_fd": 12.5,
        "created_at": "2026-11-26T10:00:00Z",
        "updated_at": "2026-11-26T10:05:00+00:00",
        "stale": False,
        "feature_space": "unknown",
    }


def rewards_json(rewards: list[float], *, k: int = 2, version: int = 1) -> dict[str, Any]:
    r = np.asarray(rewards, dtype=np.float64)
    adv = (r - r.mean()) / (r.std() + 1e-8)
    return {
        "reference": "ref",
        "version": version,
        "stale": False,
        "base_fd": 12.5,
        "mode": "shared",
        "seed": 7,
        "method": "lowrank",
        "rewards": r.tolist(),
        "fds": (12.5 - r).tolist(),
        "advantages": adv.tolist(),
        "methods_used": ["lowrank"] * len(r),
        "indices": [list(range(k))] * len(r),
        "timing": {"compute_seconds": 0.01, "total_seconds": 0.02},
    }


def commit_json(version: int = 2, replayed: bool = False) -> dict[str, Any]:
    return {"reference": "ref", "version": version, "base_fd": 12.0, "n": 100, "replayed": replayed}


def ok(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def error(status: int, detail: Any = "scripted error", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"detail": detail}, headers=headers)


def npy_body(request: httpx.Request) -> np.ndarray:
    return np.load(io.BytesIO(request.content), allow_pickle=False)


class BlockingFacade:
    """An `AsyncRewardClient` behind blocking methods, so one test body checks both clients."""

    def __init__(self, client: AsyncRewardClient) -> None:
        self._client = client
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attr(*args, **kwargs))

        return call

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()
