"""Bookkeeping for fault tests: commits whose rows carry a unique marker, retried under the same
idempotency key until acknowledged, and the checks that nothing acknowledged was lost and
nothing was applied twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
from service_support import Api, D, N

from benchmarks.stored_check import read_stored_state

ROWS = 2  # rows per commit
FIRST_MARKER = 100.0  # column 0 of commit rows: FIRST_MARKER + commit number (pool rows ~N(0, 1))
# The service's "not now": the store is down (503), or this token has its share of requests in
# flight (429: six workers may all land on one process). Nothing was applied; retried as the
# client retries them.
RETRYABLE = {429, 503}

Targets = Callable[[], list[Api]]


@dataclass
class CommitLedger:
    """What was sent and what was acknowledged, for one reference."""

    name: str
    start_version: int
    acked: dict[str, int] = field(default_factory=dict)  # key -> acknowledged version
    sent: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)  # of every attempt; 0: no answer

    def rows(self, key: str) -> np.ndarray:
        number = self.sent.index(key)
        rows = np.random.default_rng(number).normal(size=(ROWS, D)).astype(np.float32)
        rows[:, 0] = FIRST_MARKER + number  # exact in float32
        return rows

    async def commit(self, targets: Targets, key: str, timeout: float = 60.0) -> None:
        """Commit under ``key`` through the live targets in turn until acknowledged: a 503, a
        429 or a connection error is retried with the same key, as the client does."""
        self.sent.append(key)
        rows = self.rows(key)
        deadline = time.monotonic() + timeout
        attempt = 0
        while time.monotonic() < deadline:
            live = targets()
            api = live[attempt % len(live)]
            attempt += 1
            try:
                answer = await api.commit(self.name, rows, key)
            except httpx.TransportError:
                self.statuses[0] += 1  # no answer: the process is down
                await asyncio.sleep(0.1)
                continue
            self.statuses[answer.status_code] += 1
            if answer.status_code in RETRYABLE:
                await asyncio.sleep(0.1)
                continue
            assert answer.status_code == 200, answer.text
            self.acked[key] = answer.json()["version"]
            return
        raise AssertionError(f"commit {key} not acknowledged within {timeout} s")

    async def run(
        self, targets: Targets, commits: int, workers: int = 3, pause: float = 0.1
    ) -> None:
        """``commits`` commits from ``workers`` concurrent trainers, each ``pause`` seconds
        apart, so that the load spans the fault."""
        assert commits * ROWS < N, "every committed row must still be in the pool at the end"

        async def worker(index: int) -> None:
            for step in range(index, commits, workers):
                await self.commit(targets, f"commit-{step}")
                await asyncio.sleep(pause)

        await asyncio.gather(*(worker(index) for index in range(workers)))

    async def verify(self, redis_url: str, replicas: list[Api]) -> None:
        """No acknowledged commit lost, none applied twice, statistics equal the recompute from
        the stored pool, and every replica at the stored version with the same base FD."""
        versions = list(self.acked.values())
        assert len(set(versions)) == len(versions), "two commits acknowledged with one version"
        stored = await read_stored_state(redis_url, self.name)
        markers = Counter(stored.pool[:, 0].round(6).tolist())
        applied = 0
        for number, key in enumerate(self.sent):
            copies = markers[FIRST_MARKER + number]
            if key in self.acked:
                assert copies == ROWS, f"acknowledged commit {key}: {copies} rows in the pool"
            assert copies in (0, ROWS), f"commit {key} applied {copies / ROWS} times"
            applied += copies // ROWS
        assert stored.version == self.start_version + applied
        assert stored.consistent, stored.summary()
        for api in replicas:
            info = await _settled_info(api, self.name, stored.version)
            assert info["base_fd"] == pytest.approx(stored.base_fd, rel=1e-9)


async def _settled_info(api: Api, name: str, version: int, timeout: float = 15.0) -> dict:
    """The replica's answer once it is no longer stale (it retries the store by itself)."""
    deadline = time.monotonic() + timeout
    while True:
        info = (await api.info(name)).json()
        if (not info["stale"] and info["version"] == version) or time.monotonic() > deadline:
            assert info["version"] == version and not info["stale"], info
            return info
        await asyncio.sleep(0.2)


async def rewards_meanwhile(targets: Targets, name: str, until: Awaitable[None]) -> Counter[int]:
    """Reward requests against every live replica until ``until`` completes; their statuses."""
    statuses: Counter[int] = Counter()
    groups = np.random.default_rng(5).normal(size=(4, 3, D)).astype(np.float32)
    task = asyncio.ensure_future(until)
    while not task.done():
        for api in targets():
            try:
                statuses[(await api.rewards(name, groups)).status_code] += 1
            except httpx.TransportError:
                statuses[0] += 1  # the process is down: counted as no answer
        await asyncio.sleep(0.05)
    await task
    return statuses
