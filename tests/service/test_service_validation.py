"""Every bad input gets a 4xx whose message says what to fix, and changes nothing stored."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from service_support import Api, D, N, npy

pytestmark = pytest.mark.asyncio


def _npy_with_dtype(dtype: str) -> bytes:
    return npy(np.zeros((2, 3, D), dtype=dtype))


def _truncated() -> bytes:
    return npy(np.zeros((2, 3, D), dtype=np.float32))[:-8]


def _pickled() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _groups(*shape: int, fill: float | None = None) -> np.ndarray:
    groups = np.random.default_rng(0).normal(size=shape)
    if fill is not None:
        groups[0, 0, 0] = fill
    return groups


REWARDS = "/v1/references/ref/rewards"
COMMIT = "/v1/references/ref/commit"
POOL = "/v1/references/ref/pool"
FD = "/v1/references/ref/fd"

# (id, method, path, content type, body (bytes | JSON), status, words the message must contain)
CASES: list[tuple[str, str, str, str, Any, int, str]] = [
    ("wrong-d", "POST", REWARDS, "npy", _groups(2, 3, D + 1), 400, "d="),
    ("nan", "POST", REWARDS, "npy", _groups(2, 3, D, fill=np.nan), 400, "NaN or Inf"),
    (
        "inf-json",
        "POST",
        REWARDS,
        "raw-json",
        b'{"groups": [[[Infinity' + b", 0.0" * (D - 1) + b"]]]}",
        400,
        "NaN or Inf",
    ),
    ("empty-groups", "POST", REWARDS, "json", {"groups": []}, 400, "empty"),
    ("empty-group", "POST", REWARDS, "npy", np.zeros((2, 0, D)), 400, "empty"),
    (
        "ragged",
        "POST",
        REWARDS,
        "json",
        {"groups": [[[0.0] * D] * 3, [[0.0] * D] * 2]},
        400,
        "ragged",
    ),
    ("2d-groups", "POST", REWARDS, "npy", np.zeros((3, D)), 400, "3 dimensions"),
    ("k-over-pool", "POST", REWARDS, "npy", _groups(1, N + 1, D), 413, "exceed"),
    ("too-many-groups", "POST", REWARDS, "npy", _groups(40, 2, D), 413, "groups"),
    ("int-dtype", "POST", REWARDS, "bytes", _npy_with_dtype("int32"), 400, "dtype"),
    ("big-endian", "POST", REWARDS, "bytes", _npy_with_dtype(">f4"), 400, "little-endian"),
    ("pickle", "POST", REWARDS, "bytes", _pickled(), 400, "dtype"),
    ("truncated", "POST", REWARDS, "bytes", _truncated(), 400, "bytes follow"),
    ("not-npy", "POST", REWARDS, "bytes", b"hello world", 400, ".npy"),
    ("bad-mode", "POST", REWARDS, "json", {"groups": [[[0.0] * D]], "mode": "x"}, 422, "mode"),
    ("unknown-field", "POST", REWARDS, "json", {"groups": [[[0.0] * D]], "x": 1}, 422, "x"),
    ("bad-json", "POST", REWARDS, "raw-json", b"{not json", 422, "JSON"),
    (
        "bad-indices",
        "POST",
        REWARDS + "?mode=indices&indices=1,a",
        "npy",
        _groups(1, 2, D),
        400,
        "comma-separated",
    ),
    (
        "indices-out-of-range",
        "POST",
        REWARDS + "?mode=indices&indices=1,999",
        "npy",
        _groups(1, 2, D),
        400,
        "ndices",
    ),
    ("wrong-content-type", "POST", REWARDS, "text", b"1,2,3", 415, "Content-Type"),
    ("oversize", "POST", REWARDS, "bytes", b"\x93NUMPY" + b"\0" * (5 * 1024 * 1024), 413, "limit"),
    (
        "unknown-reference",
        "POST",
        "/v1/references/nope/rewards",
        "npy",
        _groups(1, 2, D),
        404,
        "unknown reference",
    ),
    ("bad-name", "GET", "/v1/references/bad$name", None, None, 422, "name"),
    ("commit-no-key", "POST", COMMIT, "npy", _groups(2, D), 422, "Idempotency-Key"),
    ("commit-wrong-d", "POST", COMMIT, "json", {"features": [[0.0] * (D - 1)]}, 400, "d="),
    ("commit-too-many", "POST", COMMIT, "json", {"features": [[0.0] * D] * (N + 1)}, 400, "exceed"),
    (
        "commit-nan",
        "POST",
        COMMIT,
        "raw-json",
        b'{"features": [[NaN' + b", 0.0" * (D - 1) + b"]]}",
        400,
        "NaN",
    ),
    ("fd-one-row", "POST", FD, "npy", np.zeros((1, D)), 400, "at least 2"),
    ("fd-wrong-d", "POST", FD, "npy", np.zeros((5, 3)), 400, "d="),
    ("pool-wrong-d", "PUT", POOL, "npy", np.zeros((10, D + 2)), 400, "d="),
    ("pool-one-row", "PUT", POOL, "npy", np.zeros((1, D)), 400, "at least 2"),
    ("pool-chunk-without-start", "POST", POOL, "npy", np.zeros((4, D)), 409, "PUT"),
    ("target-wrong-d", "PUT", "/v1/references/ref/target", "npy", np.zeros((9, D + 1)), 409, "d="),
    (
        "target-both",
        "PUT",
        "/v1/references/ref/target",
        "json",
        {"mu": [0.0] * D, "features": [[0.0] * D] * 3},
        400,
        "either",
    ),
    (
        "target-asymmetric",
        "PUT",
        "/v1/references/ref/target",
        "json",
        {"mu": [0.0] * 2, "sigma": [[1.0, 0.5], [0.0, 1.0]]},
        400,
        "symmetric",
    ),
    ("npz-missing-sigma", "PUT", "/v1/references/ref/target", "npz", None, 400, "sigma"),
]


def _request_parts(kind: str | None, body: Any) -> tuple[dict[str, str], dict[str, Any]]:
    if kind is None:
        return {}, {}
    if kind == "npy":
        return {"Content-Type": "application/x-npy"}, {"content": npy(body)}
    if kind == "bytes":
        return {"Content-Type": "application/x-npy"}, {"content": body}
    if kind == "json":
        return {}, {"json": body}
    if kind == "raw-json":
        return {"Content-Type": "application/json"}, {"content": body}
    if kind == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, mu=np.zeros(D))
        return {"Content-Type": "application/x-npz"}, {"content": buffer.getvalue()}
    return {"Content-Type": "text/csv"}, {"content": body}


@pytest.mark.parametrize(
    ("method", "path", "kind", "body", "status", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_bad_input_is_refused_and_changes_nothing(
    api: Api,
    rng: np.random.Generator,
    method: str,
    path: str,
    kind: str | None,
    body: Any,
    status: int,
    words: str,
) -> None:
    await api.create("ref", rng)
    before = (await api.info("ref")).json()
    headers, content = _request_parts(kind, body)
    headers["Feature-Space"] = "unknown"  # the reference's space: see Api.create
    if path == COMMIT and status != 422:  # a key, in its header: these fail on their rows
        headers["Idempotency-Key"] = "k"
    # A target in the space "unknown" is taken only with the admin's explicit acceptance.
    params = {"accept_unknown_feature_space": "true"} if path.endswith("/target") else None
    answer = await api.client.request(
        method, path, params=params, headers=api.headers(**headers), **content
    )
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and words in detail, detail
    after = (await api.info("ref")).json()
    assert after == before
    probe = await api.rewards("ref", rng.normal(size=(1, 2, D)), seed=1)
    assert probe.status_code == 200 and probe.json()["version"] == before["version"]


async def test_declared_oversize_body_is_refused_before_reading(api: Api) -> None:
    headers = api.headers(**{"Content-Type": "application/x-npy", "Content-Length": str(10**9)})

    async def never_sent():
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover

    answer = await api.client.post(REWARDS, headers=headers, content=never_sent())
    assert answer.status_code == 413


async def test_no_pool_yet_is_a_conflict(api: Api) -> None:
    await api.send("PUT", "/v1/references/t/target", np.random.default_rng(0).normal(size=(9, D)))
    answer = await api.rewards("t", np.zeros((1, 2, D)))
    assert answer.status_code == 409 and "no pool" in answer.json()["detail"]
    commit = await api.commit("t", np.zeros((1, D)), "k")
    assert commit.status_code == 409
