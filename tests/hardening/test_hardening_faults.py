"""Faults under load (loopback, seconds each): Redis stopped and restarted, Redis killed or
paused while commits run, a service process SIGKILLed and replaced, clients vanishing mid-upload.

After each: no acknowledged commit lost, none applied twice, the stored statistics equal a
recompute from the stored pool, and every replica serves the stored version."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import redis
from commit_ledger import CommitLedger, rewards_meanwhile
from service_support import ADMIN_TOKEN, Api, ApiAt, D, RedisServer, ServiceProcess, clients, npy

pytestmark = [pytest.mark.asyncio, pytest.mark.redis]

StartServices = Callable[..., list[ServiceProcess]]
NAME = "faults"
COMMITS = 18


@pytest.fixture
def persistent_redis(tmp_path: Path):
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    yield server
    server.stop()


async def _prepared(api: Api, rng: np.random.Generator) -> CommitLedger:
    created = await api.create(NAME, rng)
    return CommitLedger(NAME, created["version"])


async def _first_ack(ledger: CommitLedger, timeout: float = 120.0) -> None:
    """Return once the load has had a commit acknowledged. A fault injected then falls inside
    the commits however busy the machine is; a fixed delay could fire before the first answer
    on a loaded machine (and a crash before any acknowledgement tests nothing)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not ledger.acked:
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"no commit acknowledged within {timeout} s")
        await asyncio.sleep(0.01)


@dataclass
class Pair:
    """Two service processes on the persistent Redis, their API helpers and a commit ledger
    of the prepared reference."""

    procs: list[ServiceProcess]
    apis: list[Api]
    ledger: CommitLedger


@pytest_asyncio.fixture
async def pair(
    persistent_redis: RedisServer, service_pair_factory: StartServices, rng: np.random.Generator
) -> AsyncIterator[Pair]:
    procs = service_pair_factory(persistent_redis.url)
    async with clients(*procs) as apis:
        yield Pair(procs, apis, await _prepared(apis[0], rng))


def _no_server_errors(statuses: dict[int, int]) -> None:
    """Reads are served (stale if need be) or refused with 503; never a 500."""
    assert all(status < 500 or status == 503 for status in statuses), statuses


async def test_redis_stopped_and_restarted_mid_load(
    persistent_redis: RedisServer,
    service_pair_factory: StartServices,
    rng: np.random.Generator,
) -> None:
    procs = service_pair_factory(persistent_redis.url, DISTREWARD_SNAPSHOT_EVERY="5")
    async with clients(*procs) as apis:
        ledger = await _prepared(apis[0], rng)

        async def outage() -> None:
            await _first_ack(ledger)
            await asyncio.to_thread(persistent_redis.stop)
            await asyncio.sleep(2.0)
            await asyncio.to_thread(persistent_redis.start)

        load = asyncio.gather(ledger.run(lambda: apis, COMMITS), outage())
        rewards = await rewards_meanwhile(lambda: apis, NAME, load)
        _no_server_errors(rewards)
        assert rewards[200] > 0
        assert ledger.statuses[503] > 0, "the outage did not overlap the commits"
        await ledger.verify(persistent_redis.url, apis)
        assert len(ledger.acked) == COMMITS


@pytest.mark.parametrize("interruption", ["sigkill", "client-pause"])
async def test_commits_interrupted_inside_redis(
    persistent_redis: RedisServer,
    pair: Pair,
    interruption: str,
) -> None:
    """Redis dies (SIGKILL, fsync always) or stops executing writes for longer than the
    service's Redis timeout and its one retry (CLIENT PAUSE WRITE) while a burst of commits is
    in flight: some commits fail after being sent; their retries under the same key apply them
    once."""
    apis, ledger = pair.apis, pair.ledger

    async def interrupt() -> None:
        await _first_ack(ledger)
        if interruption == "sigkill":
            await asyncio.to_thread(persistent_redis.kill)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(persistent_redis.start)
        else:
            with redis.Redis.from_url(persistent_redis.url) as admin:
                admin.client_pause(3000, all=False)  # outlasts timeout + retry (2 x 1 s)

    await asyncio.gather(ledger.run(lambda: apis, COMMITS, workers=6), interrupt())
    assert ledger.statuses[503] > 0, "the interruption did not overlap the commits"
    await ledger.verify(persistent_redis.url, apis)
    assert len(ledger.acked) == COMMITS


async def test_a_service_process_killed_and_replaced(
    persistent_redis: RedisServer, service_pair_factory: StartServices, pair: Pair
) -> None:
    procs, apis, ledger = pair.procs, pair.apis, pair.ledger
    live = list(apis)
    acked_at_crash: list[int] = []

    async def crash() -> None:
        await _first_ack(ledger)
        procs[0].kill()  # clients keep trying it until the replacement is up
        acked_at_crash.append(len(ledger.acked))
        (replacement,) = await asyncio.to_thread(service_pair_factory, persistent_redis.url, 1)
        live[0] = ApiAt(apis[0].client, replacement.url)

    load = asyncio.gather(ledger.run(lambda: live, COMMITS), crash())
    rewards = await rewards_meanwhile(lambda: live, NAME, load)
    _no_server_errors(rewards)
    assert rewards[0] + ledger.statuses[0] > 0, "nothing was sent to the dead process"
    assert 0 < acked_at_crash[0] < COMMITS, "the crash did not fall inside the load"
    await ledger.verify(persistent_redis.url, live)
    assert len(ledger.acked) == COMMITS and len(live) == 2


def _abandoned_upload(url: str, method: str, path: str, headers: dict[str, str]) -> None:
    """Send the headers of a large ``.npy`` body and a part of it, then hang up."""
    body = npy(np.zeros((4096, D), dtype=np.float32))
    host, port = url.removeprefix("http://").split(":")
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {len(body)}",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "Content-Type: application/x-npy",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body[: len(body) // 3])


async def test_clients_that_hang_up_mid_upload(persistent_redis: RedisServer, pair: Pair) -> None:
    procs, apis, ledger = pair.procs, pair.apis, pair.ledger
    uploads = [
        ("PUT", f"/v1/references/{NAME}/pool", {}),
        ("POST", f"/v1/references/{NAME}/pool", {}),
        ("POST", f"/v1/references/{NAME}/commit", {"Idempotency-Key": "abandoned"}),
        ("POST", f"/v1/references/{NAME}/rewards", {}),
    ]

    async def hang_ups() -> None:
        for round_ in range(3):
            for method, path, headers in uploads:
                proc = procs[round_ % len(procs)]
                await asyncio.to_thread(_abandoned_upload, proc.url, method, path, headers)
            await asyncio.sleep(0.1)

    await asyncio.gather(ledger.run(lambda: apis, COMMITS), hang_ups())
    await ledger.verify(persistent_redis.url, apis)
    logs = [proc.log_path.read_text() for proc in procs]
    assert all("unhandled" not in text for text in logs)
    assert any("disconnected mid-body" in text for text in logs)
    info = (await apis[1].info(NAME)).json()
    assert info["n"] == 64 and len(ledger.acked) == COMMITS
