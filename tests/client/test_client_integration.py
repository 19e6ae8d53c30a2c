"""The client against a real service process (uvicorn on a loopback port, embedded store).

Covers what a scripted transport cannot: the contract as the service implements it, retries
riding over a service restart, and two trainers sharing one service. The service is started
as a subprocess, never imported: the client must work with nothing but HTTP between them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import reward_client as rc
from support import launch

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("reward_service") is None
    or importlib.util.find_spec("uvicorn") is None,
    reason="the service (extra 'service') is not installed",
)

TRAINER = "trainer-token-integration-0123"
ADMIN = "admin-token-integration-0123"
D = 8


class ServiceProcess(launch.ServiceProcess):
    """The shared service process (started at once) with this module's tokens, the embedded
    store and the CPU engine; ready once the client's own probe (``/readyz``) says so."""

    def __init__(self, log: Path) -> None:
        super().__init__(
            log,
            {
                "DISTREWARD_REDIS_URL": "",
                "DISTREWARD_TOKENS": TRAINER,
                "DISTREWARD_ADMIN_TOKENS": ADMIN,
                "DISTREWARD_DEVICE": "cpu",
                "DISTREWARD_LOG_LEVEL": "warning",
            },
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        with rc.RewardClient(self.url) as probe:
            probe.wait_ready(timeout=timeout)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(tmp_path_factory.mktemp("service") / "service.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


class CountingTransport(httpx.HTTPTransport):
    """The real network transport, counting the attempts the client makes."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        return super().handle_request(request)


def _client(url: str, token: str = ADMIN, **settings: Any) -> rc.RewardClient:
    settings = {"retries": 2, "backoff": 0.05, "max_backoff": 0.5, **settings}
    return rc.RewardClient(url, token=token, config=rc.ClientConfig(**settings))


def _setup_reference(client: rc.RewardClient, name: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    client.put_target(name, features=rng.normal(size=(400, D)), accept_unknown_feature_space=True)
    pool = rng.normal(0.3, 1.0, size=(250, D))
    info = client.put_pool(name, pool, chunk_rows=64)  # four chunks: a staged upload
    assert (info.n, info.d) == (250, D)
    return pool


def test_round_trip(service: ServiceProcess) -> None:
    rng = np.random.default_rng(1)
    with _client(service.url) as admin, _client(service.url, TRAINER) as trainer:
        pool = _setup_reference(admin, "roundtrip")
        info = trainer.info("roundtrip")
        assert info.version >= 1 and info.base_fd is not None
        assert "roundtrip" in {r.name for r in trainer.list_references()}

        # FD of the pool itself is the base FD: the same statistics, two routes.
        assert trainer.fd("roundtrip", pool).fd == pytest.approx(info.base_fd, rel=1e-6)

        groups = rng.normal(size=(4, 5, D))
        batch = trainer.rewards("roundtrip", groups, seed=3)
        assert batch.version == info.version and batch.seed == 3
        np.testing.assert_allclose(batch.rewards, batch.base_fd - batch.fds, rtol=1e-9)
        r = batch.rewards
        np.testing.assert_allclose(batch.advantages, (r - r.mean()) / (r.std() + 1e-8), atol=1e-9)
        assert batch.indices.shape == (4, 5)

        # JSON transport, same request: same answer.
        with _client(service.url, TRAINER, binary=False) as as_json:
            again = as_json.rewards("roundtrip", groups.astype(np.float32), seed=3)
        np.testing.assert_allclose(again.rewards, batch.rewards, rtol=1e-9, atol=1e-12)

        # A retry sends the same rows with the same key: applied once.
        rows = rng.normal(size=(5, D))
        commit = trainer.commit("roundtrip", rows, idempotency_key="rt-1")
        assert commit.version == info.version + 1 and not commit.replayed
        replay = trainer.commit("roundtrip", rows, idempotency_key="rt-1")
        assert replay.replayed and replay.version == commit.version

        with pytest.raises(rc.VersionMismatch):
            trainer.rewards("roundtrip", groups, version=info.version)
        with pytest.raises(rc.BadRequest, match="d="):
            trainer.rewards("roundtrip", rng.normal(size=(2, 5, D + 1)))
        with pytest.raises(rc.Forbidden):
            trainer.delete("roundtrip")
        with (
            _client(service.url, "not-a-valid-token-0000") as stranger,
            pytest.raises(rc.Unauthorized),
        ):
            stranger.info("roundtrip")
        admin.delete("roundtrip")
        with pytest.raises(rc.NotFound):
            trainer.info("roundtrip")


def test_target_statistics_upload(service: ServiceProcess) -> None:
    with _client(service.url) as admin, _client(service.url, binary=False) as as_json:
        stats = {"mu": np.zeros(D), "sigma": np.eye(D), "accept_unknown_feature_space": True}
        assert admin.put_target("stats-npz", **stats).d == D
        assert as_json.put_target("stats-json", **stats).d == D


def test_reward_fn_matches_the_service_in_input_order(service: ServiceProcess) -> None:
    rng = np.random.default_rng(2)
    with _client(service.url) as client:
        _setup_reference(client, "dropin")
        features = rng.normal(size=(6 * 4, D))
        reward_fn = rc.distribution_reward_fn(client, "dropin", group_size=4, seed=11)
        rewards, info = reward_fn(features, ["p"] * 24, [{}] * 24)
        direct = client.rewards("dropin", features.reshape(6, 4, D), seed=11)
    np.testing.assert_allclose(rewards, np.repeat(direct.rewards, 4), rtol=1e-9)
    assert info["version"] == direct.version


def test_async_client(service: ServiceProcess) -> None:
    rng = np.random.default_rng(3)
    with _client(service.url) as admin:
        _setup_reference(admin, "async")

    async def main() -> list[rc.RewardBatch]:
        async with rc.AsyncRewardClient(service.url, token=TRAINER) as client:
            assert (await client.ready()).ready
            return await asyncio.gather(
                *(client.rewards("async", rng.normal(size=(2, 3, D))) for _ in range(4))
            )

    assert [len(b) for b in asyncio.run(main())] == [2, 2, 2, 2]


def test_two_trainers_both_make_progress(service: ServiceProcess) -> None:
    steps = 6
    with _client(service.url) as admin:
        _setup_reference(admin, "shared")
        start = admin.info("shared").version

    def trainer(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        versions = []
        with _client(service.url, TRAINER) as client:
            for _ in range(steps):
                client.rewards("shared", rng.normal(size=(2, 4, D)))
                versions.append(client.commit("shared", rng.normal(size=(4, D))).version)
        return versions

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(trainer, [10, 11])
    assert len(first) == len(second) == steps
    # Every commit of both trainers applied exactly once: no lost or doubled commits.
    assert sorted(first + second) == list(range(start + 1, start + 2 * steps + 1))
    with _client(service.url) as admin:
        assert admin.info("shared").version == start + 2 * steps


def test_retries_ride_over_a_restart(tmp_path: Path) -> None:
    proc = ServiceProcess(tmp_path / "service.log")
    restarter = threading.Timer(0.5, proc.start)  # starts it again, without waiting
    try:
        proc.wait_ready()
        transport = CountingTransport()
        config = rc.ClientConfig(retries=60, backoff=0.05, max_backoff=0.25)
        with rc.RewardClient(proc.url, token=ADMIN, config=config, transport=transport) as client:
            _setup_reference(client, "restart")
            proc.stop()  # the service goes away mid-run ...
            restarter.start()  # ... and comes back (empty: the store is in-memory)
            before = transport.attempts
            started = time.monotonic()
            info = client.put_target(
                "restart",
                features=np.random.default_rng(4).normal(size=(50, D)),
                accept_unknown_feature_space=True,
            )
            restarter.join()
            assert info.name == "restart"
            assert transport.attempts - before > 1  # connection refused, retried
            assert time.monotonic() - started >= 0.5

            # A 4xx is an answer, not a failure: sent once, raised at once.
            before = transport.attempts
            with pytest.raises(rc.Conflict):  # target but no pool yet after the restart
                client.rewards("restart", np.zeros((1, 2, D)))
            with pytest.raises(rc.NotFound):
                client.info("never-created")
            assert transport.attempts - before == 2
    finally:
        restarter.cancel()  # a failed test must not leave a service behind
        if restarter.is_alive():
            restarter.join()
        proc.stop()


def test_timeouts_against_a_silent_server() -> None:
    # A socket that accepts connections (in its backlog) and never answers: every attempt
    # ends in a read timeout, which is retried, then raised as RequestTimeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        transport = CountingTransport()
        config = rc.ClientConfig(timeout=0.2, retries=1, backoff=0.01)
        started = time.monotonic()
        client = rc.RewardClient(url, token=TRAINER, config=config, transport=transport)
        with client, pytest.raises(rc.RequestTimeout) as caught:
            client.info("anything")
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert transport.attempts == 2
    assert 0.4 <= time.monotonic() - started < 5
