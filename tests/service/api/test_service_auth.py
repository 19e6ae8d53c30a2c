"""Auth matrix: no token, unknown token, trainer and admin token on every route."""

from __future__ import annotations

import numpy as np
import pytest
from service_support import ADMIN_TOKEN, TRAINER_TOKEN, Api, D, npy

pytestmark = pytest.mark.asyncio


@pytest.fixture
def store_kind() -> str:
    """Auth does not depend on the store: the memory store is enough here."""
    return "memory"


NPY = {"Content-Type": "application/x-npy"}
GROUPS = npy(np.zeros((1, 2, D)))
ROWS = npy(np.zeros((4, D)))

# (method, path, headers, body, role)
PROTECTED = [
    ("GET", "/v1/references", {}, None, "trainer"),
    ("GET", "/v1/references/ref", {}, None, "trainer"),
    ("POST", "/v1/references/ref/rewards", NPY, GROUPS, "trainer"),
    ("POST", "/v1/references/ref/fd", NPY, ROWS, "trainer"),
    ("POST", "/v1/references/ref/commit", {**NPY, "Idempotency-Key": "k"}, ROWS, "trainer"),
    (
        "PUT",
        "/v1/references/ref/target?accept_unknown_feature_space=true",  # the space of ref
        {**NPY, "Feature-Space": "unknown"},
        ROWS,
        "admin",
    ),
    ("PUT", "/v1/references/ref/pool", NPY, ROWS, "admin"),
    ("POST", "/v1/references/ref/pool", NPY, ROWS, "admin"),
    ("DELETE", "/v1/references/ref", {}, None, "admin"),
]
PUBLIC = ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"]
CALLERS = {
    "none": None,
    "unknown": "not-a-configured-token-123",
    "trainer": TRAINER_TOKEN,
    "admin": ADMIN_TOKEN,
}


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "role"),
    PROTECTED,
    ids=[f"{m} {p}" for m, p, *_ in PROTECTED],
)
async def test_auth_matrix(
    api: Api,
    rng: np.random.Generator,
    caller: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    role: str,
) -> None:
    await api.create("ref", rng)
    token = CALLERS[caller]
    sent = dict(headers)
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    answer = await api.client.request(method, path, headers=sent, content=body)
    if caller in ("none", "unknown"):
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert "token" in answer.json()["detail"]
    elif caller == "trainer" and role == "admin":
        assert answer.status_code == 403
        assert "admin" in answer.json()["detail"]
    else:
        assert answer.status_code < 300 or answer.status_code == 409, answer.text


@pytest.mark.parametrize("path", PUBLIC)
async def test_public_routes_need_no_token(api: Api, path: str) -> None:
    assert (await api.client.get(path)).status_code == 200
