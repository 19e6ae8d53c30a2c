"""Feature spaces: a reference records the space of its target, and every request that posts
features must come from it (the ``Feature-Space`` header, exact strings; 409 naming both)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pytest
from service_support import (
    ADMIN_TOKEN,
    SPACE,
    Api,
    D,
    N,
    clients,
    make_settings,
    npy,
    serving,
)

import reward_client as rc
from reward_service.store import MemoryStore

OTHER = "other-net/pool@sha256:fedcba9876543210/rgb-u8"


def _stats_npz(space: str | None, **extra: np.ndarray) -> bytes:
    """A statistics file as reward_client writes it (``feature_space`` member), or as other
    tools do (none)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(D, D))
    members: dict[str, Any] = {"mu": rng.normal(0.3, 1.0, size=D), "sigma": a @ a.T / D, **extra}
    if space is not None:
        members["feature_space"] = np.array(space)
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    return buffer.getvalue()


async def _put_npz(
    api: Api, name: str, body: bytes, *, space: str | None = None, **params: str
) -> httpx.Response:
    headers = {"Content-Type": "application/x-npz"}
    if space is not None:
        headers["Feature-Space"] = space
    base = getattr(api, "base_url", "")  # a process's ApiAt, or an in-process app's Api
    return await api.client.put(
        f"{base}/v1/references/{name}/target",
        content=body,
        params=params,
        headers=api.headers(**headers),
    )


async def _with_pool(api: Api, name: str, space: str) -> dict[str, Any]:
    """A reference in ``space`` (from its statistics file) with a pool of N rows."""
    created = await _put_npz(api, name, _stats_npz(space))
    assert created.status_code == 200, created.text
    assert created.json()["feature_space"] == space
    pool = np.random.default_rng(1).normal(size=(N, D))
    answer = await api.send(
        "PUT", f"/v1/references/{name}/pool", pool, headers={"Feature-Space": space}
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _posts(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every route that posts features to a reference: (method, path, how), each valid but for
    its space. (A target names its space on its own terms: see the next test.)"""
    rng = np.random.default_rng(2)
    groups, rows = rng.normal(size=(2, 4, D)), rng.normal(size=(4, D))
    base = f"/v1/references/{name}"
    return [
        ("POST", f"{base}/rewards", {"array": groups}),
        ("POST", f"{base}/rewards", {"binary": False, "json_fields": {"groups": groups.tolist()}}),
        ("POST", f"{base}/credits", {"array": rows}),
        ("POST", f"{base}/commit", {"array": rows, "headers": {"Idempotency-Key": "k1"}}),
        ("POST", f"{base}/fd", {"binary": False, "json_fields": {"features": rows.tolist()}}),
        ("PUT", f"{base}/pool", {"array": rows}),
    ]


async def _send(api: Api, method: str, path: str, how: dict[str, Any], space: str | None):
    headers = dict(how.get("headers", {}))
    if space is not None:
        headers["Feature-Space"] = space
    return await api.send(
        method,
        path,
        how.get("array"),
        binary=how.get("binary", True),
        json_fields=how.get("json_fields"),
        headers=headers,
        params={},
    )


@pytest.mark.asyncio
async def test_every_post_of_another_space_is_a_409_naming_both_and_changes_nothing(
    api: Api,
) -> None:
    before = await _with_pool(api, "r", SPACE)
    for method, path, how in _posts("r"):
        answer = await _send(api, method, path, how, OTHER)
        assert answer.status_code == 409, (path, answer.text)
        detail = answer.json()["detail"]
        assert SPACE in detail and OTHER in detail, detail
        missing = await _send(api, method, path, how, None)
        assert missing.status_code == 409, (path, missing.text)
        assert SPACE in missing.json()["detail"] and "Feature-Space" in missing.json()["detail"]
    # The process holds the reference: the header is refused before the body is read.
    unread = await api.client.post(
        "/v1/references/r/rewards",
        content=b"not a .npy body",
        headers=api.headers(**{"Content-Type": "application/x-npy", "Feature-Space": OTHER}),
    )
    assert unread.status_code == 409, unread.text
    after = (await api.info("r")).json()
    assert after == before
    for method, path, how in _posts("r"):
        answer = await _send(api, method, path, how, SPACE)
        assert answer.status_code == 200, (path, answer.text)
    assert (await api.info("r")).json()["version"] == before["version"] + 2  # commit, pool


@pytest.mark.asyncio
async def test_a_target_names_its_space_or_is_accepted_as_unknown_explicitly(api: Api) -> None:
    refused = await _put_npz(api, "t", _stats_npz(None))
    assert refused.status_code == 422
    assert "Feature-Space" in refused.json()["detail"]
    assert "accept_unknown_feature_space" in refused.json()["detail"]
    assert (await api.info("t")).status_code == 404

    both = await _put_npz(api, "t", _stats_npz(SPACE), space=OTHER)
    assert both.status_code == 409 and SPACE in both.json()["detail"]
    assert OTHER in both.json()["detail"]
    assert (await api.info("t")).status_code == 404

    declared = await _put_npz(api, "t", _stats_npz(None), space=SPACE)
    assert declared.json()["feature_space"] == SPACE
    unknown = await _put_npz(api, "u", _stats_npz(None), accept_unknown_feature_space="true")
    assert unknown.json()["feature_space"] == "unknown"
    fitted = await api.send(
        "PUT",
        "/v1/references/f/target",
        np.ones((3, D)),
        params={},
        headers={"Feature-Space": SPACE},
    )
    assert fitted.json()["feature_space"] == SPACE
    # The flag does not override a space that is named.
    named = await _put_npz(api, "v", _stats_npz(OTHER), accept_unknown_feature_space="true")
    assert named.json()["feature_space"] == OTHER

    # Replacing a target keeps the space: another one is refused (delete first), in either
    # form; a replacement that names none is refused like a creation.
    before = (await api.info("t")).json()
    moved = await _put_npz(api, "t", _stats_npz(OTHER))
    assert moved.status_code == 409 and "delete" in moved.json()["detail"]
    assert SPACE in moved.json()["detail"] and OTHER in moved.json()["detail"]
    path, rows = "/v1/references/t/target", np.ones((3, D))
    fitted_other = await api.send("PUT", path, rows, params={}, headers={"Feature-Space": OTHER})
    assert fitted_other.status_code == 409
    assert (await api.send("PUT", path, rows, params={})).status_code == 422
    assert (await api.info("t")).json() == before
    same = await api.send("PUT", path, rows, params={}, headers={"Feature-Space": SPACE})
    assert same.status_code == 200 and same.json()["feature_space"] == SPACE
    listed = (await api.send("GET", "/v1/references")).json()["references"]
    assert {ref["name"]: ref["feature_space"] for ref in listed} == {
        "t": SPACE,
        "u": "unknown",
        "f": SPACE,
        "v": OTHER,
    }


@pytest.mark.asyncio
async def test_an_unknown_reference_takes_requests_without_the_header_only(
    api: Api, rng: np.random.Generator
) -> None:
    await api.create("u", rng)  # statistics from no network: "unknown"
    groups = rng.normal(size=(2, 4, D))
    assert (await api.rewards("u", groups)).status_code == 200
    path = "/v1/references/u/rewards"
    spelled = await api.send("POST", path, groups, headers={"Feature-Space": "unknown"})
    assert spelled.status_code == 200
    named = await api.send("POST", path, groups, headers={"Feature-Space": SPACE})
    assert named.status_code == 409 and "'unknown'" in named.json()["detail"]


@pytest.mark.asyncio
async def test_a_malformed_header_is_a_422(api: Api, rng: np.random.Generator) -> None:
    await api.create("u", rng)
    path = "/v1/references/u/rewards"
    groups = rng.normal(size=(2, 4, D))
    for bad in ("two words", "x" * 257):
        answer = await api.send("POST", path, groups, headers={"Feature-Space": bad})
        assert answer.status_code == 422, answer.text
        assert "Feature-Space" in answer.json()["detail"]


@pytest.mark.asyncio
async def test_a_bad_feature_space_member_is_a_400(api: Api) -> None:
    for member in (np.array(["a", "b"]), np.zeros(3), np.array("two words")):
        answer = await _put_npz(api, "t", _stats_npz(None, feature_space=member))
        assert answer.status_code == 400, answer.text
        assert "feature_space member" in answer.json()["detail"]
    assert (await api.info("t")).status_code == 404


@pytest.mark.asyncio
async def test_the_space_survives_restarts_and_every_replica_sees_it(
    redis_url: str, service_pair_factory: Any
) -> None:
    first, second = service_pair_factory(redis_url)
    async with clients(first, second) as (a, b):
        await _with_pool(a, "r", SPACE)
        assert (await b.info("r")).json()["feature_space"] == SPACE
        groups = np.random.default_rng(3).normal(size=(2, 4, D))
        path = "/v1/references/r/rewards"
        wrong = await b.send("POST", path, groups, headers={"Feature-Space": OTHER})
        assert wrong.status_code == 409
        first.stop()
        first.start()
        first.wait_ready()
        assert (await a.info("r")).json()["feature_space"] == SPACE
        right = await a.send("POST", path, groups, headers={"Feature-Space": SPACE})
        assert right.status_code == 200, right.text
        wrong = await a.send("POST", path, groups, headers={"Feature-Space": OTHER})
        assert wrong.status_code == 409


@pytest.mark.asyncio
async def test_a_replica_that_does_not_hold_the_reference_refuses_after_loading_it() -> None:
    """The header is checked before the body only where the reference is held; a replica that
    meets it first in a request checks it against the version it loads to serve it."""
    store, settings = MemoryStore(), make_settings()
    # Both replicas start before the reference exists: ``other`` holds nothing of it.
    async with serving(settings, store) as other, serving(settings, store) as creator:
        await _with_pool(creator, "r", SPACE)
        groups = np.random.default_rng(5).normal(size=(2, 4, D))
        path = "/v1/references/r/rewards"
        wrong = await other.send("POST", path, groups, headers={"Feature-Space": OTHER})
        assert wrong.status_code == 409 and OTHER in wrong.json()["detail"]
        missing = await other.send("POST", path, groups)
        assert missing.status_code == 409 and "names no feature space" in missing.json()["detail"]
        right = await other.send("POST", path, groups, headers={"Feature-Space": SPACE})
        assert right.status_code == 200, right.text


@pytest.mark.asyncio
async def test_a_replica_that_does_not_hold_the_reference_refuses_another_d_after_loading_it() -> (
    None
):
    """A body's d is checked by its header only where the reference is held; a replica that
    meets the reference first in a request checks it against the version it loads to serve it,
    with the same 400."""
    store, settings = MemoryStore(), make_settings()
    async with serving(settings, store) as other, serving(settings, store) as creator:
        await _with_pool(creator, "r", SPACE)
        rng = np.random.default_rng(8)
        path = "/v1/references/r/rewards"
        space = {"Feature-Space": SPACE}
        wrong = await other.send("POST", path, rng.normal(size=(2, 4, D + 1)), headers=space)
        assert wrong.status_code == 400, wrong.text
        assert f"d={D + 1} but the reference has d={D}" in wrong.json()["detail"]
        right = await other.send("POST", path, rng.normal(size=(2, 4, D)), headers=space)
        assert right.status_code == 200, right.text


@pytest.mark.asyncio
async def test_a_reference_created_again_in_another_space_is_served_in_the_new_one() -> None:
    """A replica that holds the old record confirms a mismatch on the stored one before
    refusing: a reference deleted and created again elsewhere is served in its new space."""
    store, settings = MemoryStore(), make_settings()
    async with serving(settings, store) as other, serving(settings, store) as creator:
        await _with_pool(creator, "r", SPACE)
        groups = np.random.default_rng(6).normal(size=(2, 4, D))
        path = "/v1/references/r/rewards"
        held = await other.send("POST", path, groups, headers={"Feature-Space": SPACE})
        assert held.status_code == 200, held.text
        assert (await creator.send("DELETE", "/v1/references/r")).status_code == 204
        await _with_pool(creator, "r", OTHER)
        moved = await other.send("POST", path, groups, headers={"Feature-Space": OTHER})
        assert moved.status_code == 200, moved.text
        old = await other.send("POST", path, groups, headers={"Feature-Space": SPACE})
        assert old.status_code == 409 and OTHER in old.json()["detail"]


def test_an_adm_layout_file_over_the_body_limit_becomes_a_target(
    tmp_path: Any, service_pair_factory: Any
) -> None:
    """ADM's reference batches: the images (``arr_0``) beside ``mu``/``sigma``, over the
    256 MiB body limit. The route spools the body to disk and reads only the statistics: the
    service's peak memory grows by far less than the file."""
    (service,) = service_pair_factory("", count=1)
    rng = np.random.default_rng(4)
    images = np.zeros((22_000, 64, 64, 3), np.uint8)  # 270 MB, as np.savez stores it: raw
    images[:, 0, 0, :] = rng.integers(0, 256, size=(22_000, 3), dtype=np.uint8)
    a = rng.normal(size=(D, D))
    mu, sigma = rng.normal(size=D), a @ a.T
    path = tmp_path / "VIRTUAL_adm_layout.npz"
    np.savez(path, arr_0=images, mu=mu, sigma=sigma, mu_s=mu, sigma_s=sigma)
    del images
    size = path.stat().st_size
    assert size > 256 * 2**20
    peak_before = _peak_rss(service.process.pid)
    try:
        with path.open("rb") as body:
            answer = httpx.put(
                f"{service.url}/v1/references/adm/target",
                content=body,
                params={"accept_unknown_feature_space": "true"},
                headers={
                    "Authorization": f"Bearer {ADMIN_TOKEN}",
                    "Content-Type": "application/x-npz",
                    "Content-Length": str(size),
                },
                timeout=120,
            )
        # Through the client: only mu and sigma travel, in the space the admin vouches for.
        sent: list[int] = []

        class Recording(httpx.HTTPTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                sent.append(len(request.read()))
                return super().handle_request(request)

        with rc.RewardClient(
            service.url, token=ADMIN_TOKEN, feature_space=SPACE, transport=Recording()
        ) as client:
            info = client.put_target("adm-client", stats=path)
    finally:
        path.unlink()
    assert (info.d, info.feature_space) == (D, SPACE)
    assert sent == [len(_stats_npz(None))]  # the statistics alone: 8 + 64 float64 values
    assert answer.status_code == 200, answer.text
    grown = _peak_rss(service.process.pid) - peak_before
    assert grown < size / 4, f"peak memory grew by {grown} bytes for a {size}-byte body"
    assert (answer.json()["d"], answer.json()["feature_space"]) == (D, "unknown")
    fd = httpx.post(
        f"{service.url}/v1/references/adm/fd",
        content=npy(rng.multivariate_normal(mu, sigma, size=20_000)),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/x-npy"},
        timeout=60,
    )
    assert fd.status_code == 200 and fd.json()["fd"] < 0.05 * np.trace(sigma), fd.text


@pytest.mark.asyncio
async def test_a_target_npz_over_its_own_limit_is_a_413_naming_the_fix() -> None:
    big = _stats_npz(SPACE, arr_0=np.zeros(8192, np.uint8))
    async with serving(make_settings(max_target_npz_bytes=4096)) as api:
        answer = await _put_npz(api, "big", big)
        assert answer.status_code == 413
        detail = answer.json()["detail"]
        assert "DISTREWARD_MAX_TARGET_NPZ_BYTES" in detail and "mu and sigma" in detail
        assert (await api.info("big")).status_code == 404
        small = await _put_npz(api, "small", _stats_npz(SPACE))
        assert small.status_code == 200, small.text


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (``VmHWM``) in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.asyncio
async def test_a_reference_created_again_with_another_d_is_served_by_a_replica_that_held_it() -> (
    None
):
    """A replica refuses a body by the d it holds only once the stored record confirms it: after
    the reference is deleted and created again with another d through another replica, the
    first request of the new d is answered 503 (its body was consumed; the client sends it
    again) and the next one is served; the old d is then refused by the stored record."""
    store, settings = MemoryStore(), make_settings()
    wider = D + 4
    rng = np.random.default_rng(7)
    async with serving(settings, store) as other, serving(settings, store) as creator:
        await _with_pool(creator, "r", SPACE)
        path = "/v1/references/r/rewards"
        space = {"Feature-Space": SPACE}
        held = await other.send("POST", path, rng.normal(size=(2, 4, D)), headers=space)
        assert held.status_code == 200, held.text
        assert (await creator.send("DELETE", "/v1/references/r")).status_code == 204
        a = rng.normal(size=(wider, wider))
        stats = {"mu": rng.normal(size=wider), "sigma": a @ a.T / wider}
        buffer = io.BytesIO()
        np.savez(buffer, feature_space=np.array(SPACE), **stats)
        created = await _put_npz(creator, "r", buffer.getvalue())
        assert created.status_code == 200, created.text
        pool = rng.normal(size=(N, wider))
        assert (await creator.send("PUT", "/v1/references/r/pool", pool, headers=space)).is_success
        groups = rng.normal(size=(2, 4, wider))
        first = await other.send("POST", path, groups, headers=space)
        assert first.status_code == 503, first.text
        assert "send the request again" in first.json()["detail"]
        assert "Retry-After" in first.headers
        again = await other.send("POST", path, groups, headers=space)
        assert again.status_code == 200, again.text
        as_json = {"groups": groups.tolist()}
        answer = await other.send("POST", path, json_fields=as_json, binary=False, headers=space)
        assert answer.status_code == 200, answer.text
        old = await other.send("POST", path, rng.normal(size=(2, 4, D)), headers=space)
        assert old.status_code == 400 and f"d={wider}" in old.json()["detail"], old.text
