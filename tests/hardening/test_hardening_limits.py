"""Limits and access: bodies refused by their header before they are read, constant-time token
checks over every token, trainer tokens kept off admin routes, loopback by default."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import numpy as np
import pytest
from service_support import TRAINER_TOKEN, Api, D, npy

from reward_service.__main__ import log_binding
from reward_service.api import deps
from reward_service.settings import Settings

pytestmark = pytest.mark.asyncio

REWARDS = "/v1/references/ref/rewards"
NPY = {"Content-Type": "application/x-npy"}


def _header_only(shape: tuple[int, ...]) -> tuple[bytes, int]:
    """The ``.npy`` header of a float32 array of ``shape`` and the full file's size."""
    whole = npy(np.zeros((1,) * len(shape), dtype=np.float32))
    header = whole[: len(whole) - 4].replace(repr((1,) * len(shape)).encode(), repr(shape).encode())
    return header, len(header) + int(np.prod(shape)) * 4


def _header_then_fail(header: bytes) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        yield header
        raise AssertionError("the service read past the .npy header")

    return body()


@pytest.mark.parametrize(
    ("path", "shape", "status", "words"),
    [
        (REWARDS, (33, 2, D), 413, "limit"),  # max_groups = 32 in the test settings
        (REWARDS, (2, 33, D), 413, "limit"),  # max_group_size = 32
        (REWARDS, (2, 3, D + 1), 400, "d="),
        (REWARDS, (6, D), 400, "3 dimensions"),
        ("/v1/references/ref/commit", (3, D + 5), 400, "d="),
        ("/v1/references/ref/fd", (300, D - 1), 400, "d="),
        ("/v1/references/ref/pool", (100, 2 * D), 400, "d="),
    ],
)
async def test_a_body_is_refused_by_its_header(
    api: Api,
    rng: np.random.Generator,
    path: str,
    shape: tuple[int, ...],
    status: int,
    words: str,
) -> None:
    await api.create("ref", rng)
    header, size = _header_only(shape)
    method = "PUT" if path.endswith("pool") else "POST"
    headers = api.headers(**NPY, **{"Content-Length": str(size), "Idempotency-Key": "k"})
    answer = await api.client.request(
        method, path, headers=headers, content=_header_then_fail(header)
    )
    assert answer.status_code == status, answer.text
    assert words in answer.json()["detail"]


async def test_a_content_length_that_disagrees_with_the_header_is_refused(
    api: Api, rng: np.random.Generator
) -> None:
    await api.create("ref", rng)
    header, size = _header_only((2, 3, D))
    headers = api.headers(**NPY, **{"Content-Length": str(size + 4096)})
    answer = await api.client.post(REWARDS, headers=headers, content=_header_then_fail(header))
    assert answer.status_code == 400 and "bytes follow" in answer.json()["detail"]


async def test_a_trainer_token_on_an_admin_upload_is_refused_before_the_body(
    api: Api, rng: np.random.Generator
) -> None:
    await api.create("ref", rng)
    header, size = _header_only((10, D))
    headers = api.headers(TRAINER_TOKEN, **NPY, **{"Content-Length": str(size)})
    for method in ("PUT", "POST"):
        answer = await api.client.request(
            method, "/v1/references/ref/pool", headers=headers, content=_header_then_fail(header)
        )
        assert answer.status_code == 403, answer.text


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer ",
        f"Basic {TRAINER_TOKEN}",
        f"Bearer {TRAINER_TOKEN}x",
        f"Bearer {TRAINER_TOKEN[:-1]}",
        "Bearer \u00e9t\u00e9-token-0001".encode(),
    ],
)
async def test_malformed_or_near_miss_credentials_get_401(
    api: Api, authorization: str | bytes
) -> None:
    answer = await api.client.get("/v1/references", headers={"Authorization": authorization})
    assert answer.status_code == 401, answer.text


async def test_tokens_are_compared_in_constant_time_over_every_token(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every configured token of both roles is compared with ``hmac.compare_digest`` on
    equal-length digests, whichever token matches (or none)."""
    settings = api_settings(api)
    configured = len(settings.tokens) + len(settings.admin_tokens)
    seen: list[tuple[int, int]] = []
    real = deps.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        seen.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", counting)
    for token in (TRAINER_TOKEN, api.token, "an-unknown-token-of-some-length"):
        seen.clear()
        await api.client.get("/v1/references", headers=api.headers(token))
        assert len(seen) == configured
        assert {pair for pair in seen} == {(32, 32)}


def api_settings(api: Api) -> Settings:
    transport = api.client._transport  # the in-process app behind the test client
    return transport.app.state.settings  # type: ignore[attr-defined]


async def test_the_service_binds_to_loopback_by_default_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DISTREWARD_HOST", raising=False)
    assert Settings(tokens=(TRAINER_TOKEN,)).host == "127.0.0.1"
    with caplog.at_level(logging.INFO, logger="reward_service"):
        log_binding("127.0.0.1", 8000)
        log_binding("0.0.0.0", 8000)
    loopback, beyond = caplog.records
    assert loopback.levelno == logging.INFO and "loopback only" in loopback.getMessage()
    assert beyond.levelno == logging.WARNING and "beyond loopback" in beyond.getMessage()


async def test_an_endless_npy_header_is_refused_at_once(api: Api, rng: np.random.Generator) -> None:
    """A v2 header may announce up to 4 GiB of header text; numpy writes a few hundred bytes."""
    await api.create("ref", rng)
    head = b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little") + b"{"
    headers = api.headers(**NPY, **{"Content-Length": str(10**6)})
    answer = await api.client.post(REWARDS, headers=headers, content=_header_then_fail(head))
    assert answer.status_code == 400 and "header" in answer.json()["detail"]
