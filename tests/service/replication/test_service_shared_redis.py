"""Service processes sharing one Redis: visibility, identical rewards, concurrent commits,
restart, and Redis going away and coming back under the same processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from service_support import (
    Api,
    D,
    N,
    RedisServer,
    ServiceProcess,
    clients,
    free_port,
    make_settings,
    serving,
)

from reward_service.replication.replica import Replica
from reward_service.store.redis import RedisStore

pytestmark = pytest.mark.asyncio

StartServices = Callable[..., list[ServiceProcess]]


async def test_a_commit_through_one_is_seen_through_the_other(
    redis_url: str, service_pair_factory: StartServices, rng: np.random.Generator
) -> None:
    procs = service_pair_factory(redis_url)
    async with clients(*procs) as (a, b):
        created = await a.create("shared", rng)
        assert (await b.info("shared")).json()["base_fd"] == created["base_fd"]

        rows = rng.normal(size=(4, D))
        committed = (await a.commit("shared", rows, "key-1")).json()
        seen = (await b.info("shared")).json()
        assert seen["version"] == committed["version"] == created["version"] + 1
        assert seen["base_fd"] == committed["base_fd"] != created["base_fd"]

        retried = (await b.commit("shared", rows, "key-1")).json()
        assert retried["replayed"] is True and retried["version"] == committed["version"]
        other_rows = await b.commit("shared", rng.normal(size=(4, D)), "key-1")
        assert other_rows.status_code == 409 and "other rows" in other_rows.json()["detail"]
        assert (await a.info("shared")).json()["version"] == committed["version"]

        groups = rng.normal(size=(4, 5, D)).astype(np.float32)
        from_a = (await a.rewards("shared", groups, seed=99)).json()
        from_b = (await b.rewards("shared", groups, seed=99)).json()
        for field in ("rewards", "fds", "advantages", "indices", "version", "base_fd"):
            assert from_a[field] == from_b[field], field


async def test_concurrent_commits_through_two_processes(
    redis_url: str, service_pair_factory: StartServices, rng: np.random.Generator
) -> None:
    procs = service_pair_factory(redis_url, DISTREWARD_SNAPSHOT_EVERY="100")
    clients_per_process, commits_each = 4, 50
    async with clients(*procs) as (a, b):
        start = (await a.create("busy", rng))["version"]

        async def trainer(api: Api, worker: int) -> list[int]:
            local = np.random.default_rng(worker)
            versions = []
            for step in range(commits_each):
                answer = await api.commit("busy", local.normal(size=(2, D)), f"{worker}-{step}")
                assert answer.status_code == 200, answer.text
                versions.append(answer.json()["version"])
            return versions

        workers = [trainer(a if w % 2 else b, w) for w in range(2 * clients_per_process)]
        acknowledged = [v for versions in await asyncio.gather(*workers) for v in versions]
        total = 2 * clients_per_process * commits_each
        assert sorted(acknowledged) == list(range(start + 1, start + total + 1))
        infos = [(await api.info("busy")).json() for api in (a, b)]
        assert infos[0]["version"] == infos[1]["version"] == start + total
        assert infos[0]["base_fd"] == pytest.approx(infos[1]["base_fd"], rel=1e-12)

    store = RedisStore.from_url(redis_url)
    try:
        base = await _wait_for_snapshot(store, "busy", start + total - start % 100)
        assert base.statistics is not None
        pool = base.pool.astype(np.float64) - base.statistics.shift
        np.testing.assert_allclose(base.statistics.total, pool.sum(0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(base.statistics.gram, pool.T @ pool, rtol=1e-9, atol=1e-9)

        fresh = Replica("busy", store, "cpu")
        state = await fresh.sync()  # snapshot + the log after it, as a restarted replica does
        assert state.version == start + total
        assert state.engine is not None
        statistics = state.engine.statistics()
        pool = state.engine.pool() - statistics.shift
        assert statistics.n == N
        np.testing.assert_allclose(statistics.total, pool.sum(0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(statistics.gram, pool.T @ pool, rtol=1e-9, atol=1e-9)
        assert state.engine.base_fd == pytest.approx(infos[0]["base_fd"], rel=1e-9)
    finally:
        await store.close()


async def _wait_for_snapshot(store: RedisStore, name: str, version: int):
    for _ in range(200):
        base = await store.read_base(name)
        if base.version >= version:
            return base
        await asyncio.sleep(0.05)
    raise AssertionError(f"no snapshot at version {version} (latest {base.version})")


async def test_restart_loads_everything_back(
    redis_url: str, service_pair_factory: StartServices, rng: np.random.Generator
) -> None:
    (first,) = service_pair_factory(redis_url, count=1)
    async with clients(first) as (api,):
        await api.create("kept", rng)
        for step in range(3):
            await api.commit("kept", rng.normal(size=(3, D)), f"k{step}")
        before = (await api.info("kept")).json()
        groups = rng.normal(size=(2, 3, D))
        rewards_before = (await api.rewards("kept", groups, seed=5)).json()["rewards"]
    first.stop()
    (second,) = service_pair_factory(redis_url, count=1)
    async with clients(second) as (api,):
        ready = await api.client.get(second.url + "/readyz")
        assert ready.json()["references"] == 1
        after = (await api.info("kept")).json()
        assert after["version"] == before["version"]
        assert after["base_fd"] == pytest.approx(before["base_fd"], rel=1e-12)
        rewards_after = (await api.rewards("kept", groups, seed=5)).json()["rewards"]
        np.testing.assert_allclose(rewards_after, rewards_before, rtol=0, atol=1e-12)


async def test_redis_outage_and_recovery(
    tmp_path: Path, service_pair_factory: StartServices, rng: np.random.Generator
) -> None:
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    try:
        procs = service_pair_factory(server.url)
        async with clients(*procs) as apis:
            a, b = apis
            await a.create("ft", rng)
            acknowledged = [
                (await api.commit("ft", rng.normal(size=(2, D)), f"before-{i}")).json()["version"]
                for i, api in enumerate((a, b, a))
            ]
            groups = rng.normal(size=(2, 3, D))
            for api in apis:  # both hold the latest version before the outage
                assert (await api.info("ft")).json()["version"] == acknowledged[-1]

            server.stop()
            for api in apis:
                served = await api.rewards("ft", groups, seed=1)
                assert served.status_code == 200, served.text
                assert served.json()["stale"] is True
                assert served.json()["version"] == acknowledged[-1]
                info = await api.info("ft")
                assert info.status_code == 200 and info.json()["stale"] is True
                fd = await api.send("POST", "/v1/references/ft/fd", rng.normal(size=(10, D)))
                assert fd.status_code == 200
                for write in (
                    api.commit("ft", rng.normal(size=(2, D)), "during"),
                    api.send("PUT", "/v1/references/ft/pool", rng.normal(size=(N, D))),
                    api.send("PUT", "/v1/references/ft/target", rng.normal(size=(20, D))),
                ):
                    refused = await write
                    assert refused.status_code == 503, refused.text
                    assert int(refused.headers["Retry-After"]) >= 1
                assert (await api.client.get(api.base_url + "/readyz")).status_code == 503
                metrics = (await api.client.get(api.base_url + "/metrics")).text
                assert "distreward_store_up 0.0" in metrics

            server.start()
            for i, api in enumerate(apis):
                answer = await api.commit("ft", rng.normal(size=(2, D)), f"after-{i}")
                assert answer.status_code == 200, answer.text
                acknowledged.append(answer.json()["version"])
            assert acknowledged == list(range(acknowledged[0], acknowledged[0] + 5))
            for api in apis:
                info = (await api.info("ft")).json()
                assert info["stale"] is False and info["version"] == acknowledged[-1]
    finally:
        server.stop()


async def test_a_service_starts_while_redis_is_unreachable() -> None:
    """Start-up does not wait for the store: readiness says so and the store's routes answer
    503 until it can be reached."""
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_seconds=0.5
    )
    async with serving(settings) as api:
        ready = await api.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        answer = await api.info("anything")
        assert answer.status_code == 503 and "Retry-After" in answer.headers


async def test_a_round_spans_processes_at_the_version_its_first_request_found(
    redis_url: str, service_pair_factory: StartServices, rng: np.random.Generator
) -> None:
    """Ranks of one step reach different processes: the round's version is the first
    request's, found through the store, and the other process answers at it although it has
    applied the round's commits (in one catch-up) since."""
    procs = service_pair_factory(redis_url)
    samples = rng.normal(0.3, 1.0, size=(6, D)).astype(np.float32)
    path = "/v1/references/ranks/credits"
    async with clients(*procs) as (a, b):
        began = (await a.create("ranks", rng))["version"]
        for step in range(3):
            answers = []
            for rank, api in enumerate((a, b, a, b)):
                answer = await api.send(
                    "POST",
                    path,
                    samples,
                    params={"round": f"job/{step}", "commit_fraction": 0.5},
                    headers={"Idempotency-Key": f"job-{step}-{rank}"},
                )
                assert answer.status_code == 200, answer.text
                answers.append(answer.json())
            assert {body["version"] for body in answers} == {began}
            for body in answers[1:]:
                np.testing.assert_allclose(body["rewards"], answers[0]["rewards"], rtol=1e-12)
            assert [body["lag"]["versions"] for body in answers] == [0, 1, 2, 3]
            began += 4  # every rank's commit is in the next round's version


def _counter(metrics: str, name: str, reference: str) -> float:
    prefix = f'{name}_total{{reference="{reference}"}} '
    return sum(
        float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix)
    )


async def test_a_version_is_built_once_for_the_processes_and_adopted_by_the_others(
    redis_url: str, service_pair_factory: StartServices, rng: np.random.Generator
) -> None:
    """Commits through one process leave rows pending on both; the one that claims a build
    builds it and shares it through Redis, the other adopts it (after checking it against its
    own rows) instead of building the same version."""
    d, n = 64, 600
    procs = service_pair_factory(redis_url)
    async with clients(*procs) as (a, b):
        real = rng.normal(0.3, 1.0, size=(4 * n, d))
        for part, rows in (("target", real), ("pool", rng.normal(size=(n, d)))):
            answer = await a.send("PUT", f"/v1/references/shared-build/{part}", rows)
            assert answer.status_code == 200, answer.text
        assert (await b.info("shared-build")).status_code == 200  # b holds it too
        for step in range(4):  # 12 rows pending: a background rebuild is due on both
            answer = await a.commit("shared-build", rng.normal(size=(3, d)), f"k{step}")
            assert answer.status_code == 200, answer.text
        infos = [(await api.info("shared-build")).json() for api in (a, b)]  # b catches up
        assert infos[0]["version"] == infos[1]["version"]
        assert infos[0]["base_fd"] == pytest.approx(infos[1]["base_fd"], rel=1e-9)
        for _ in range(300):
            await asyncio.gather(a.info("shared-build"), b.info("shared-build"))
            texts = [(await api.client.get(api.base_url + "/metrics")).text for api in (a, b)]
            built = [_counter(text, "distreward_rebuilds", "shared-build") for text in texts]
            adopted = [_counter(text, "distreward_adoptions", "shared-build") for text in texts]
            if sum(adopted) >= 1:
                break
            await asyncio.sleep(0.1)
        # A version one process built, the other adopted (which builds which is a race: the
        # claim goes to whichever asks while no build is claimed).
        assert sum(adopted) >= 1 and sum(built) >= 1, (built, adopted)


async def test_a_builder_that_died_holding_the_claim_does_not_stall_the_others(
    redis_url: str, service_pair_factory: StartServices, rng: np.random.Generator
) -> None:
    """The claim to build expires (DISTREWARD_BUILD_LEASE_SECONDS): a process whose builder
    died with it builds the version itself once it does, and serves meanwhile."""
    d, n = 64, 600
    (proc,) = service_pair_factory(redis_url, count=1, DISTREWARD_BUILD_LEASE_SECONDS="2")
    async with clients(proc) as (api,):
        real = rng.normal(0.3, 1.0, size=(4 * n, d))
        for part, rows in (("target", real), ("pool", rng.normal(size=(n, d)))):
            answer = await api.send("PUT", f"/v1/references/orphan/{part}", rows)
            assert answer.status_code == 200, answer.text
        store = RedisStore.from_url(redis_url)
        try:
            meta = await store.read_meta("orphan")
            assert meta is not None
            assert await store.claim_build("orphan", meta.incarnation, "a-dead-builder", 2.0)
        finally:
            await store.close()
        for step in range(4):
            answer = await api.commit("orphan", rng.normal(size=(3, d)), f"k{step}")
            assert answer.status_code == 200, answer.text
        samples = rng.normal(size=(8, d)).astype(np.float32)
        served = await api.send("POST", "/v1/references/orphan/credits", samples)
        assert served.status_code == 200, served.text
        built = 0.0
        for _ in range(100):
            await api.info("orphan")
            metrics = (await api.client.get(api.base_url + "/metrics")).text
            built = _counter(metrics, "distreward_rebuilds", "orphan")
            if built:
                break
            await asyncio.sleep(0.1)
        assert built >= 1
