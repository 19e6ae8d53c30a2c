"""Inputs the fuzzer found that once made a 500, kept as plain regression tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from service_support import Api, D

pytestmark = pytest.mark.asyncio

GROUPS = np.zeros((2, 3, D))


@pytest.mark.parametrize(
    ("fields", "query", "status"),
    [
        ({"mode": "indices", "indices": [[0, 1, 2], [0, 1]]}, None, 400),  # ragged
        # Row numbers and seeds beyond the document's range: refused by the schema (422).
        ({"mode": "indices", "indices": [0, 1, 10**30]}, None, 422),  # beyond int64
        (None, {"mode": "indices", "indices": f"0,1,{10**30}"}, 400),
        ({"seed": -5}, None, 422),
    ],
    ids=["ragged-json", "overflow-json", "overflow-query", "negative-seed"],
)
async def test_odd_indices_and_seeds_are_4xx(
    api: Api,
    rng: np.random.Generator,
    fields: dict[str, Any] | None,
    query: dict[str, Any] | None,
    status: int,
) -> None:
    await api.create("ref", rng)
    if fields is not None:
        answer = await api.rewards("ref", GROUPS, binary=False, **fields)
    else:
        answer = await api.rewards("ref", GROUPS, **(query or {}))
    assert answer.status_code == status, answer.text
