"""The cost bound per request: a rewards request whose estimated engine work exceeds
``max_request_gflop`` is a 413 that names the limit, how many groups fit and the cheaper method,
in either wire format, counted as reason ``cost``, and changes nothing."""

from __future__ import annotations

import pytest
from service_support import D, make_settings

from reward_service.cost import request_gflop

# Exact path at d = 8, groups of 4: 4 K d^2 + (4/3) d^3 = 1,707 flop a group.
PER_GROUP = request_gflop((1, 4, D), "exact")


@pytest.fixture
def settings():
    return make_settings(max_request_gflop=2.5 * PER_GROUP)  # two groups fit, three do not


def test_the_estimate_follows_the_path_the_engine_takes() -> None:
    assert pytest.approx((4 * 4 * D**2 + 4 / 3 * D**3) / 1e9) == PER_GROUP
    # The request: 250 groups of 64 at d = 2048 on the exact path, 8 minutes on 2 cores.
    assert request_gflop((250, 64, 2048), "exact") == pytest.approx(3131, rel=1e-3)
    # Low-rank where the update rank 2K + 1 fits a quarter of d; exact beyond.
    assert request_gflop((150, 32, 2048), "lowrank") == pytest.approx(211, rel=1e-2)
    assert request_gflop((1, 600, 2048), "lowrank") == request_gflop((1, 600, 2048), "exact")
    assert request_gflop((5, D), "exact") == pytest.approx(5 * request_gflop((1, 1, D), "exact"))
    # A pool the low-rank path cannot serve (its A S A numerically singular: N <= d) runs
    # every group exact, and is priced so.
    singular = request_gflop((150, 32, 2048), "lowrank", lowrank_ready=False)
    assert singular == request_gflop((150, 32, 2048), "exact")


@pytest.mark.asyncio
@pytest.mark.parametrize("binary", [True, False])
async def test_a_request_over_the_bound_is_a_413_naming_the_way_out(api, rng, binary) -> None:
    await api.create("ref", rng)
    before = (await api.info("ref")).json()
    groups = rng.normal(size=(3, 4, D))
    answer = await api.rewards("ref", groups, binary=binary, method="exact")
    assert answer.status_code == 413, answer.text
    detail = answer.json()["detail"]
    for words in ("DISTREWARD_MAX_REQUEST_GFLOP", "at most 2 groups", "method=lowrank"):
        assert words in detail, detail
    assert (await api.info("ref")).json()["version"] == before["version"]
    metrics = (await api.client.get("/metrics")).text
    assert 'distreward_rejections_total{reason="cost"} 1.0' in metrics
    fitting = await api.rewards("ref", groups[:2], binary=binary, method="exact")
    assert fitting.status_code == 200, fitting.text
