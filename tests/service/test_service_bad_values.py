"""One bad request must not break a reference, on both stores: values beyond what float64 holds,
statistics that are not a Gaussian's, crafted ``.npy`` headers and damaged ``.npz`` archives are
refused with a 4xx that says what to fix, before anything is stored; the other references and a
freshly started replica keep serving. A reference whose stored data cannot be loaded is isolated
and reported; an idempotency key reused with other rows is a 409."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from service_support import Api, D, N, make_settings, npy, record, service_process, serving

from reward_service.settings import Settings
from reward_service.store import Store, open_store

pytestmark = pytest.mark.asyncio

BOUND = 1e6  # the default DISTREWARD_MAX_FEATURE_ABS
NAMES = ("ref", "other")
Body = tuple[dict[str, str], bytes]


@dataclass
class Stack:
    """A running app over a store, and how to start another replica on the same state."""

    api: Api
    settings: Settings
    store: Store

    def fresh(self) -> AbstractAsyncContextManager[Api]:
        """A newly started replica: the same memory store object, or its own Redis client."""
        return serving(self.settings, None if self.settings.redis_url else self.store)


@pytest_asyncio.fixture
async def stack(settings: Settings, rng: np.random.Generator) -> AsyncIterator[Stack]:
    store = open_store(settings.redis_url, settings.redis_timeout_seconds)
    async with serving(settings, store) as api:
        for name in NAMES:
            await api.create(name, rng)
        yield Stack(api, settings, store)


def _npy(array: np.ndarray) -> Body:
    return {"Content-Type": "application/x-npy"}, npy(array)


def _json(value: Any) -> Body:
    return {"Content-Type": "application/json"}, json.dumps(value).encode()


def _npz(data: bytes) -> Body:
    return {"Content-Type": "application/x-npz"}, data


def _crafted_npy(shape: tuple[int, ...], data_bytes: int) -> Body:
    """A ``.npy`` header announcing ``shape`` (whatever it is), then ``data_bytes`` zeros."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    head = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text
    return {"Content-Type": "application/x-npy"}, head + bytes(data_bytes)


def _archive(mu: np.ndarray, sigma: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, mu=mu, sigma=sigma)
    return buffer.getvalue()


def _patched_headers(data: bytes, *, flags: int = 0, method: int | None = None) -> bytes:
    """Every local and central header of a ZIP archive with ``flags`` or-ed into its general
    purpose flags and, if given, its compression method replaced."""
    out = bytearray(data)
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = out.find(signature)
        while at >= 0:
            old = int.from_bytes(out[at + flag_at : at + flag_at + 2], "little")
            out[at + flag_at : at + flag_at + 2] = (old | flags).to_bytes(2, "little")
            if method is not None:
                out[at + flag_at + 2 : at + flag_at + 4] = method.to_bytes(2, "little")
            at = out.find(signature, at + 4)
    return bytes(out)


def _bad_crc(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("sigma.npy")
    out = bytearray(data)
    out[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # a stored data byte
    return bytes(out)


_GOOD = _archive(np.zeros(D), np.eye(D))
_HUGE = np.full((4, D), 1e200)
_LONG = (2**62 + 1, D)  # its byte count overflows int64

# (id, method, route, body, status, words in the message)
CASES: list[tuple[str, str, str, Body, int, str]] = [
    ("commit-1e200", "POST", "commit", _npy(_HUGE), 400, "MAX_FEATURE_ABS"),
    ("commit-json-1e200", "POST", "commit", _json({"features": _HUGE.tolist()}), 400, "exceeds"),
    ("commit-over-bound", "POST", "commit", _npy(np.full((4, D), 2 * BOUND)), 400, "exceeds"),
    ("pool-1e200", "PUT", "pool", _npy(np.full((N, D), 1e200)), 400, "MAX_FEATURE_ABS"),
    ("target-fit-1e200", "PUT", "target", _npy(np.full((10, D), 1e200)), 400, "exceeds"),
    ("rewards-1e200", "POST", "rewards", _npy(np.full((2, 4, D), 1e200)), 400, "exceeds"),
    ("fd-1e200", "POST", "fd", _npy(_HUGE), 400, "exceeds"),
    (
        "target-mu-1e200",
        "PUT",
        "target",
        _json({"mu": [1e200] * D, "sigma": np.eye(D).tolist()}),
        400,
        "mu",
    ),
    (
        "target-sigma-minus-5",
        "PUT",
        "target",
        _json({"mu": [0.0] * D, "sigma": (-5 * np.eye(D)).tolist()}),
        400,
        "semi-definite",
    ),
    (
        "target-sigma-indefinite",
        "PUT",
        "target",
        _npz(_archive(np.zeros(D), np.diag([1.0] * (D - 1) + [-0.5]))),
        400,
        "semi-definite",
    ),
    ("rewards-negative-dims", "POST", "rewards", _crafted_npy((-1, -1, D), 4 * D), 400, "negative"),
    ("commit-overflowing-shape", "POST", "commit", _crafted_npy(_LONG, 64), 400, "header"),
    ("fd-overflowing-shape", "POST", "fd", _crafted_npy(_LONG, 64), 400, "header"),
    ("target-overflowing-shape", "PUT", "target", _crafted_npy(_LONG, 64), 400, "header"),
    ("npz-bad-crc", "PUT", "target", _npz(_bad_crc(_GOOD)), 400, ".npz"),
    ("npz-encrypted", "PUT", "target", _npz(_patched_headers(_GOOD, flags=1)), 400, ".npz"),
    ("npz-method-99", "PUT", "target", _npz(_patched_headers(_GOOD, method=99)), 400, ".npz"),
    ("npz-truncated", "PUT", "target", _npz(_GOOD[: len(_GOOD) // 2]), 400, ".npz"),
]


async def _served(api: Api) -> dict[str, tuple[int, float]]:
    """Every listed reference's (version, base FD), after checking each answers rewards."""
    listed = await api.send("GET", "/v1/references")
    assert listed.status_code == 200, listed.text
    served = {}
    for info in listed.json()["references"]:
        groups = np.random.default_rng(0).normal(size=(2, 4, D))
        answer = await api.rewards(info["name"], groups, seed=1)
        assert answer.status_code == 200, answer.text
        served[info["name"]] = (info["version"], info["base_fd"])
    return served


async def _nothing_changed(stack: Stack, before: dict[str, tuple[int, float]]) -> None:
    assert await _served(stack.api) == before
    async with stack.fresh() as fresh:
        assert await _served(fresh) == before


@pytest.mark.parametrize(
    ("method", "route", "body", "status", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_refused_before_anything_is_stored(
    stack: Stack, method: str, route: str, body: Body, status: int, words: str
) -> None:
    before = await _served(stack.api)
    headers, content = body
    headers = {**headers, "Feature-Space": "unknown"}  # the references' space: see create
    if route == "commit":
        headers = {**headers, "Idempotency-Key": "key-1"}
    # A target in the space "unknown" is taken only with the admin's explicit acceptance.
    params = {"accept_unknown_feature_space": "true"} if route == "target" else None
    answer = await stack.api.client.request(
        method,
        f"/v1/references/ref/{route}",
        content=content,
        params=params,
        headers=stack.api.headers(**headers),
    )
    assert answer.status_code == status, answer.text
    assert words in answer.json()["detail"], answer.json()["detail"]
    await _nothing_changed(stack, before)
    if route == "commit":  # the key was not kept either: good rows under it are a new commit
        good = await stack.api.commit("ref", np.zeros((4, D)), "key-1")
        assert good.status_code == 200 and good.json()["replayed"] is False, good.text


async def test_an_idempotency_key_with_other_rows_is_a_409(
    stack: Stack, rng: np.random.Generator
) -> None:
    rows = rng.normal(size=(4, D))
    first = (await stack.api.commit("ref", rows, "key-1")).json()
    before = await _served(stack.api)
    again = await stack.api.commit("ref", rows + 1.0, "key-1")
    assert again.status_code == 409 and "other rows" in again.json()["detail"], again.text
    retried = await stack.api.commit("ref", rows, "key-1", binary=False)  # JSON, same rows
    assert retried.status_code == 200, retried.text
    assert retried.json()["replayed"] is True and retried.json()["version"] == first["version"]
    await _nothing_changed(stack, before)


async def test_a_reference_that_cannot_be_loaded_is_isolated(
    stack: Stack, rng: np.random.Generator
) -> None:
    """Rows no request could send any more are written into the store directly (as an older
    service would have stored them): the reference is reported and the rest carries on."""
    before = await _served(stack.api)
    meta = await stack.store.read_meta("other")
    assert meta is not None
    poison = record(np.full((4, D), 1e200), "poison", now=time.time())
    await stack.store.append_commit("other", meta.incarnation, poison)

    async def reports_other(api: Api) -> None:
        answer = await api.info("other")
        assert answer.status_code == 409 and "cannot be loaded" in answer.json()["detail"]
        ready = await api.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["unloadable"] == ["other"]
        metrics = (await api.client.get("/metrics")).text
        assert 'distreward_reference_unloadable{reference="other"} 1.0' in metrics
        assert await _served(api) == {"ref": before["ref"]}

    await reports_other(stack.api)
    async with stack.fresh() as fresh:  # a replica starting now starts, and serves "ref"
        await reports_other(fresh)

    pool = rng.normal(size=(N, D)).astype(np.float32)  # an admin replaces the pool: it loads
    assert (await stack.api.send("PUT", "/v1/references/other/pool", pool)).status_code == 200
    assert set(await _served(stack.api)) == set(NAMES)
    assert (await stack.api.client.get("/readyz")).json()["unloadable"] == []
    assert "distreward_reference_unloadable{" not in (await stack.api.client.get("/metrics")).text


def _fd(rows: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """The FD of ``rows``' Gaussian to (mu, sigma), from scratch in float64."""
    mean, cov = rows.mean(0), np.cov(rows, rowvar=False)
    values, vectors = np.linalg.eigh(sigma)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root @ cov @ root)
    return float(
        ((mean - mu) ** 2).sum()
        + np.trace(cov)
        + np.trace(sigma)
        - 2 * np.sqrt(np.clip(inner, 0, None)).sum()
    )


async def test_base_fd_is_exact_after_rows_at_the_bound_left_the_ring(
    stack: Stack, rng: np.random.Generator
) -> None:
    real = rng.normal(0.3, 1.0, size=(4 * N, D))
    pool = rng.normal(size=(N, D))
    # Rows at the bound in the uploaded pool (an admin's): a trainer's commit of them would be
    # refused, as it would take the pool's A S A off the low-rank path (test_hardening_degenerate).
    pool[:4] = BOUND * np.where(rng.random((4, D)) < 0.5, -1.0, 1.0)
    api = stack.api
    assert (await api.send("PUT", "/v1/references/exact/target", real)).status_code == 200
    assert (await api.send("PUT", "/v1/references/exact/pool", pool)).status_code == 200
    mu, sigma = real.mean(0), np.cov(real, rowvar=False)
    held, cursor = pool.copy(), 0

    async def commit(rows: np.ndarray, key: str) -> None:
        nonlocal cursor
        answer = await api.commit("exact", rows, key)
        assert answer.status_code == 200, answer.text
        for row in rows:  # the ring: each row replaces the oldest one
            held[cursor] = row
            cursor = (cursor + 1) % N

    for step in range(N // 16):
        await commit(rng.normal(size=(16, D)), f"normal-{step}")
    expected = _fd(held, mu, sigma)
    assert (await api.info("exact")).json()["base_fd"] == pytest.approx(expected, rel=1e-9)
    async with stack.fresh() as fresh:
        assert (await fresh.info("exact")).json()["base_fd"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.redis
async def test_a_service_process_starts_beside_an_unloadable_reference(
    redis_url: str, tmp_path: Path, rng: np.random.Generator
) -> None:
    """The issue's crash: ``python -m reward_service`` starting on a Redis that holds a poisoned
    reference comes up, serves the others and reports the poisoned one."""
    settings = make_settings(redis_url=redis_url)
    store = open_store(redis_url, settings.redis_timeout_seconds)
    async with serving(settings, store) as api:
        for name in NAMES:
            await api.create(name, rng)
        meta = await store.read_meta("other")
        assert meta is not None
        poison = record(np.full((4, D), 1e200), "poison", now=time.time())
        await store.append_commit("other", meta.incarnation, poison)
    process = service_process(redis_url, tmp_path / "service.log")
    try:
        await asyncio.to_thread(process.wait_ready, 60.0, "/readyz")
        async with httpx.AsyncClient(base_url=process.url, timeout=30) as client:
            fresh = Api(client)
            assert (await client.get("/readyz")).json()["unloadable"] == ["other"]
            assert set(await _served(fresh)) == {"ref"}
    finally:
        process.stop()
