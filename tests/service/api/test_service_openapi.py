"""The OpenAPI document follows the service's settings (the same Limits that check requests), and
the router's 405 names every method a path serves. The whole document is checked against a
running service by ``tests/contract``."""

from __future__ import annotations

from typing import Any

import pytest
from service_support import make_settings, serving

pytestmark = pytest.mark.asyncio

LIMITED = {"max_groups": 7, "max_group_size": 5, "max_samples": 9, "max_feature_abs": 10.0}


async def _document() -> dict[str, Any]:
    async with serving(make_settings(**LIMITED)) as api:
        answer = await api.client.get("/openapi.json")
        assert answer.status_code == 200
        return dict(answer.json())


def _body(document: dict[str, Any], path: str, media_type: str) -> dict[str, Any]:
    operation = document["paths"][f"/v1/references/{{name}}/{path}"]["post"]
    schema = operation["requestBody"]["content"][media_type]["schema"]
    return dict(schema)


async def test_array_bodies_state_the_limits_of_the_settings() -> None:
    document = await _document()
    groups = _body(document, "rewards", "application/json")["properties"]["groups"]
    assert (groups["minItems"], groups["maxItems"]) == (1, 7)
    assert (groups["items"]["minItems"], groups["items"]["maxItems"]) == (1, 5)
    number = groups["items"]["items"]["items"]
    assert (number["minimum"], number["maximum"]) == (-10.0, 10.0)
    samples = _body(document, "credits", "application/json")["properties"]["samples"]
    assert samples["maxItems"] == 9
    assert _body(document, "fd", "application/json")["properties"]["features"]["minItems"] == 2
    npy = _body(document, "rewards", "application/x-npy")
    assert (npy["type"], npy["format"]) == ("string", "binary")
    assert npy["contentSchema"] == {k: v for k, v in groups.items() if k in npy["contentSchema"]}
    target = document["paths"]["/v1/references/{name}/target"]["put"]["requestBody"]["content"]
    sigma = target["application/x-npz"]["schema"]["contentSchema"]["properties"]["sigma"]
    assert sigma["items"]["items"]["maximum"] == 100.0  # sigma: within the square


async def test_required_headers_and_error_answers_are_documented() -> None:
    document = await _document()
    commit = document["paths"]["/v1/references/{name}/commit"]["post"]
    key = next(p for p in commit["parameters"] if p["name"] == "Idempotency-Key")
    assert key["in"] == "header" and key["required"] is True
    assert {"400", "401", "404", "409", "413", "415", "422", "429", "503"} <= set(
        commit["responses"]
    )
    assert "Retry-After" in commit["responses"]["503"]["headers"]
    assert "WWW-Authenticate" in commit["responses"]["401"]["headers"]
    delete = document["paths"]["/v1/references/{name}"]["delete"]
    assert {"401", "403", "404"} <= set(delete["responses"])


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/references/ref", "GET, DELETE"),
        ("PATCH", "/v1/references/ref/pool", "POST, PUT"),
        ("GET", "/v1/references/ref/rewards", "POST"),
    ],
)
async def test_405_allows_every_method_the_path_serves(method: str, path: str, allow: str) -> None:
    async with serving(make_settings()) as api:
        answer = await api.client.request(method, path, headers=api.headers())
    assert answer.status_code == 405
    assert answer.headers["Allow"] == allow
    assert isinstance(answer.json()["detail"], str)
