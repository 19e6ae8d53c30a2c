"""Every endpoint in both wire formats, over the memory and the Redis store."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from service_support import ADMIN_TOKEN, Api, D, N

from reward_service.engine import RewardEngine, gaussian_of

pytestmark = pytest.mark.asyncio

FORMATS = pytest.mark.parametrize("binary", [True, False], ids=["npy", "json"])


def local_engine(rng_seed: int) -> tuple[RewardEngine, np.random.Generator]:
    """The engine the service should hold after ``Api.create`` with the same generator (on the
    device the service picks by default, so that both compute alike)."""
    rng = np.random.default_rng(rng_seed)
    real = rng.normal(0.3, 1.0, size=(4 * N, D))
    pool = rng.normal(size=(N, D)).astype(np.float32)
    mu, sigma = gaussian_of(torch.from_numpy(real))
    engine = RewardEngine(
        mu.numpy(), sigma.numpy(), pool.astype(np.float64), device=None, version=1
    )
    return engine, rng


async def test_health_readiness_and_metrics(api: Api, store_kind: str) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    metrics = await api.client.get("/metrics")
    assert "distreward_store_up 1.0" in metrics.text  # known at start-up, not at first use
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "store": store_kind,
        "references": 0,
        "unloadable": [],
    }
    metrics = await api.client.get("/metrics")
    assert metrics.status_code == 200
    assert 'distreward_requests_total{endpoint="/readyz",method="GET",status="200"} 1.0' in (
        metrics.text
    )


async def test_docs_render_from_local_assets(api: Api) -> None:
    page = await api.client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, "the docs page references no assets"
    for url in assets:
        assert url.startswith("/"), f"{url} is not served locally"
        asset = await api.client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    schema = (await api.client.get("/openapi.json")).json()
    assert "/v1/references/{name}/rewards" in schema["paths"]


@FORMATS
async def test_reference_lifecycle(api: Api, binary: bool) -> None:
    engine, rng = local_engine(7)
    info = await api.create("lifecycle", np.random.default_rng(7), binary=binary)
    assert info["d"] == D and info["n"] == N and info["version"] == 1
    assert info["stale"] is False
    assert info["base_fd"] == pytest.approx(engine.base_fd, rel=1e-12)

    listed = (await api.send("GET", "/v1/references")).json()["references"]
    assert [ref["name"] for ref in listed] == ["lifecycle"]

    rows = rng.normal(size=(4, D)).astype(np.float32)
    committed = await api.commit("lifecycle", rows, "first", binary=binary)
    assert committed.status_code == 200, committed.text
    engine.commit(rows)
    body = committed.json()
    assert body["version"] == 2 and body["replayed"] is False and body["n"] == N
    assert body["base_fd"] == pytest.approx(engine.base_fd, rel=1e-12)
    assert (await api.info("lifecycle")).json()["version"] == 2

    deleted = await api.send("DELETE", "/v1/references/lifecycle")
    assert deleted.status_code == 204
    assert (await api.info("lifecycle")).status_code == 404


@FORMATS
@pytest.mark.parametrize("mode", ["shared", "independent"])
async def test_rewards_equal_the_engine(api: Api, binary: bool, mode: str) -> None:
    engine, rng = local_engine(11)
    await api.create("r", np.random.default_rng(11))
    groups = rng.normal(0.2, 1.0, size=(5, 6, D)).astype(np.float32)
    answer = await api.rewards("r", groups, binary=binary, seed=42, mode=mode)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = engine.rewards(groups, mode=mode, seed=42)
    np.testing.assert_allclose(body["rewards"], expected.rewards, rtol=0, atol=1e-12)
    np.testing.assert_allclose(body["fds"], expected.fds, rtol=0, atol=1e-12)
    np.testing.assert_allclose(body["advantages"], expected.advantages, rtol=0, atol=1e-9)
    assert body["indices"] == expected.indices.tolist()
    assert body["seed"] == 42 and body["mode"] == mode and body["version"] == 1
    assert body["stale"] is False and body["methods_used"] == list(expected.methods_used)
    assert body["timing"]["total_seconds"] >= body["timing"]["compute_seconds"] >= 0


@FORMATS
async def test_rewards_with_explicit_indices_and_exact_method(api: Api, binary: bool) -> None:
    engine, rng = local_engine(3)
    await api.create("r", np.random.default_rng(3))
    groups = rng.normal(size=(2, 3, D))
    rows = [5, 17, 40]
    if binary:
        answer = await api.rewards("r", groups, mode="indices", indices="5,17,40", method="exact")
    else:
        answer = await api.rewards(
            "r", groups, binary=False, mode="indices", indices=rows, method="exact"
        )
    assert answer.status_code == 200, answer.text
    expected = engine.rewards(groups, mode="indices", indices=np.array(rows), method="exact")
    np.testing.assert_allclose(answer.json()["rewards"], expected.rewards, rtol=0, atol=1e-12)
    assert answer.json()["indices"] == [rows, rows]


@FORMATS
async def test_fd_equals_the_engine(api: Api, binary: bool) -> None:
    engine, rng = local_engine(5)
    await api.create("r", np.random.default_rng(5))
    features = rng.normal(size=(40, D))
    path = "/v1/references/r/fd"
    if binary:
        answer = await api.send("POST", path, features)
    else:
        answer = await api.send(
            "POST", path, binary=False, json_fields={"features": features.tolist()}
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["fd"] == pytest.approx(engine.fd(features), rel=1e-12)
    assert answer.json()["n"] == 40 and answer.json()["version"] == 1


async def test_fd_before_a_pool_uses_the_target(api: Api, rng: np.random.Generator) -> None:
    mu, sigma = np.zeros(D), np.eye(D)
    answer = await api.send(
        "PUT",
        "/v1/references/t/target",
        binary=False,
        json_fields={"mu": mu.tolist(), "sigma": sigma.tolist()},
    )
    assert answer.status_code == 200 and answer.json()["n"] == 0
    assert answer.json()["base_fd"] is None
    # Equal covariances: FD is |mu_a - mu_b|^2; a large sample of N(0, I) is close to 0.
    features = rng.normal(size=(20000, D))
    fd = (await api.send("POST", "/v1/references/t/fd", features)).json()["fd"]
    assert 0 <= fd < 0.01


async def test_target_from_npz(api: Api, rng: np.random.Generator) -> None:
    mu = rng.normal(size=D)
    a = rng.normal(size=(D, D))
    buffer = io.BytesIO()
    np.savez(buffer, mu=mu, sigma=a @ a.T)
    answer = await api.client.put(
        "/v1/references/z/target",
        content=buffer.getvalue(),
        params={"accept_unknown_feature_space": "true"},  # pytorch-fid's layout: no provenance
        headers=api.headers(**{"Content-Type": "application/x-npz"}),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["d"] == D
    assert answer.json()["feature_space"] == "unknown"


@FORMATS
async def test_chunked_pool_upload(api: Api, binary: bool) -> None:
    engine, _ = local_engine(9)
    rng = np.random.default_rng(9)
    real = rng.normal(0.3, 1.0, size=(4 * N, D))
    pool = rng.normal(size=(N, D)).astype(np.float32)
    await api.send("PUT", "/v1/references/c/target", real)
    path = "/v1/references/c/pool"
    parts = np.array_split(pool, 3)

    async def upload(method: str, part: np.ndarray, final: bool):
        if binary:
            return await api.send(method, path, part, params={"final": str(final).lower()})
        return await api.send(
            method, path, binary=False, json_fields={"features": part.tolist(), "final": final}
        )

    first = await upload("PUT", parts[0], False)
    assert first.json() == {"staged_rows": len(parts[0])}
    second = await upload("POST", parts[1], False)
    assert second.json() == {"staged_rows": len(parts[0]) + len(parts[1])}
    assert (await api.info("c")).json()["n"] == 0
    last = await upload("POST", parts[2], True)
    assert last.status_code == 200, last.text
    assert last.json()["n"] == N and last.json()["version"] == 1
    assert last.json()["base_fd"] == pytest.approx(engine.base_fd, rel=1e-12)


async def test_republishing_a_pool_resets_the_ring(api: Api, rng: np.random.Generator) -> None:
    await api.create("p", rng)
    await api.commit("p", rng.normal(size=(3, D)), "k")
    again = await api.send("PUT", "/v1/references/p/pool", rng.normal(size=(N // 2, D)))
    assert again.status_code == 200
    assert again.json()["version"] == 3 and again.json()["n"] == N // 2


async def test_retargeting_bumps_the_version(api: Api, rng: np.random.Generator) -> None:
    first = await api.create("t", rng)
    answer = await api.send("PUT", "/v1/references/t/target", rng.normal(size=(100, D)))
    assert answer.status_code == 200
    assert answer.json()["version"] == first["version"] + 1
    assert answer.json()["base_fd"] != first["base_fd"]


@FORMATS
async def test_commit_retry_applies_once(api: Api, binary: bool, rng: np.random.Generator) -> None:
    await api.create("i", rng)
    rows = rng.normal(size=(5, D))
    first = await api.commit("i", rows, "retry-me", binary=binary)
    again = await api.commit("i", rows, "retry-me", binary=binary)
    assert first.status_code == again.status_code == 200
    assert first.json()["replayed"] is False and again.json()["replayed"] is True
    assert again.json()["version"] == first.json()["version"] == 2
    assert again.json()["base_fd"] == first.json()["base_fd"]
    info = (await api.info("i")).json()
    assert info["version"] == 2 and info["base_fd"] == first.json()["base_fd"]


async def test_version_pin(api: Api, rng: np.random.Generator) -> None:
    await api.create("v", rng)
    groups = rng.normal(size=(2, 3, D))
    assert (await api.rewards("v", groups, version=1)).status_code == 200
    moved = await api.rewards("v", groups, version=7)
    assert moved.status_code == 409
    assert "version" in moved.json()["detail"]


async def test_request_metrics_use_route_templates(api: Api, rng: np.random.Generator) -> None:
    await api.create("m", rng)
    await api.rewards("m", rng.normal(size=(2, 3, D)))
    text = (await api.client.get("/metrics")).text
    assert 'endpoint="/v1/references/{name}/rewards"' in text
    assert 'distreward_samples_rewarded_total{reference="m"} 6.0' in text
    assert 'distreward_groups_rewarded_total{reference="m"} 2.0' in text
    assert 'distreward_pool_size{reference="m"} 64.0' in text
    assert "/v1/references/m/" not in text
    assert ADMIN_TOKEN not in text
