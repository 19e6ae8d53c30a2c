"""Per-sample credits over HTTP, commits of a share of what a request rewards, and pool freshness
in answers, reference info and /metrics, on both stores."""

from __future__ import annotations

import numpy as np
import pytest
from service_support import Api, D, N, make_settings, serving

from reward_service.settings import Settings

pytestmark = pytest.mark.asyncio

CREDITS = "/v1/references/ref/credits"


async def _credits(api: Api, samples: np.ndarray, *, binary: bool = True, **params):
    if binary:
        headers = {}
        if "idempotency_key" in params:
            headers["Idempotency-Key"] = params.pop("idempotency_key")
        return await api.send("POST", CREDITS, samples, params=params, headers=headers)
    return await api.send(
        "POST", CREDITS, binary=False, json_fields={"samples": samples.tolist(), **params}
    )


@pytest.mark.parametrize("binary", [True, False], ids=["npy", "json"])
async def test_credits_are_singleton_group_rewards_against_one_shared_row(
    api: Api, rng: np.random.Generator, binary: bool
) -> None:
    await api.create("ref", rng)
    samples = rng.normal(0.3, 1.0, size=(30, D)).astype(np.float32)
    answer = await _credits(api, samples, binary=binary, form="replace", seed=5)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["form"] == "replace" and body["seed"] == 5 and 0 <= body["row"] < N
    assert body["version"] == 1
    assert len(body["rewards"]) == len(body["advantages"]) == len(body["methods_used"]) == 30
    np.testing.assert_allclose(body["fds"], body["base_fd"] - np.array(body["rewards"]))
    # The same numbers as 30 groups of one sample replacing that row.
    groups = await api.rewards(
        "ref", samples[:, None, :], mode="indices", indices=str(body["row"]), method="exact"
    )
    assert groups.status_code == 200, groups.text
    np.testing.assert_allclose(body["rewards"], groups.json()["rewards"], rtol=1e-9, atol=1e-12)
    rewards = np.array(body["rewards"])
    assert np.std(body["advantages"]) == pytest.approx(1.0, rel=1e-6)
    assert np.argmax(body["advantages"]) == np.argmax(rewards)
    assert body["freshness"]["share"] == 0.0 and body["committed"] is None
    again = await _credits(api, samples, binary=binary, form="replace", row=body["row"])
    assert again.json()["rewards"] == body["rewards"] and again.json()["seed"] is None


@pytest.mark.parametrize("binary", [True, False], ids=["npy", "json"])
async def test_credits_add_each_sample_to_the_pool_by_default(
    api: Api, rng: np.random.Generator, binary: bool
) -> None:
    """No row: the answer names none, and a sample's credit does not depend on the request
    it came in (the same numbers one by one, in another order, or exactly)."""
    await api.create("ref", rng)
    samples = rng.normal(0.3, 1.0, size=(12, D)).astype(np.float32)
    answer = await _credits(api, samples, binary=binary)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["form"] == "add" and body["row"] is None and body["seed"] is None
    assert len(body["methods_used"]) == len(body["rewards"]) == 12
    reversed_ = (await _credits(api, samples[::-1], binary=binary, method="exact")).json()
    np.testing.assert_allclose(
        reversed_["rewards"][::-1], body["rewards"], rtol=0, atol=1e-9 * max(1.0, body["base_fd"])
    )
    single = (await _credits(api, samples[4:5], binary=binary)).json()
    assert single["rewards"][0] == pytest.approx(body["rewards"][4], rel=1e-9)
    refused = await _credits(api, samples, binary=binary, row=2)
    assert refused.status_code == 400 and "only with form=replace" in refused.text


async def test_a_share_of_what_is_rewarded_is_committed_once_and_freshness_follows(
    api: Api, rng: np.random.Generator
) -> None:
    await api.create("ref", rng)
    samples = rng.normal(0.3, 1.0, size=(20, D)).astype(np.float32)
    info = (await api.info("ref")).json()
    assert info["freshness"]["share"] == 0.0 and info["freshness"]["seconds_since_commit"] is None
    first = await _credits(api, samples, commit_fraction=0.5, idempotency_key="step-1")
    assert first.status_code == 200, first.text
    committed = first.json()["committed"]
    assert committed["version"] == 2 and committed["replayed"] is False
    assert committed["rows"] == 10  # 0.5 x 20 is a whole number: no rounding draw
    # A retry (no seed: the key seeds the draw) applies nothing new.
    retry = (await _credits(api, samples, commit_fraction=0.5, idempotency_key="step-1")).json()
    assert retry["committed"] == {**committed, "replayed": True}
    assert retry["row"] == first.json()["row"] and retry["seed"] == first.json()["seed"]
    info = (await api.info("ref")).json()
    assert info["version"] == 2
    assert info["freshness"]["rows"] == 10 and info["freshness"]["share"] == 10 / N
    assert info["freshness"]["seconds_since_commit"] >= 0.0
    # Group rewards commit a share of their rows the same way, and say how fresh the pool was.
    groups = rng.normal(size=(4, 3, D)).astype(np.float32)
    answer = await api.send(
        "POST",
        "/v1/references/ref/rewards",
        groups,
        params={"commit_fraction": 1.0, "seed": 3},
        headers={"Idempotency-Key": "step-2"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["committed"]["rows"] == 12 and answer.json()["committed"]["version"] == 3
    assert answer.json()["freshness"]["share"] == 10 / N  # before its own commit
    # A commit is answered once stored, and applied here before the next read needs it.
    info = (await api.info("ref")).json()
    assert info["freshness"]["share"] == 22 / N
    metrics = (await api.client.get("/metrics")).text
    assert f'distreward_pool_freshness{{reference="ref"}} {22 / N}' in metrics


async def test_the_committed_share_is_unbiased(api: Api, rng: np.random.Generator) -> None:
    await api.create("ref", rng)
    samples = rng.normal(size=(3, D)).astype(np.float32)
    counts = []
    for step in range(24):
        answer = await _credits(
            api, samples, seed=step, commit_fraction=0.5, idempotency_key=f"k{step}"
        )
        committed = answer.json()["committed"]
        counts.append(0 if committed is None else committed["rows"])
    # 1.5 rows a request on average: one or two each time, both seen.
    assert set(counts) == {1, 2}
    info = (await api.info("ref")).json()
    assert info["version"] == 1 + 24


@pytest.mark.parametrize(
    "params, status, message",
    [
        ({"commit_fraction": 0.5}, 422, "idempotency key"),
        ({"commit_fraction": 1.5, "idempotency_key": "k"}, 422, "commit_fraction"),
        ({"commit_fraction": 0.0, "idempotency_key": "k"}, 422, "commit_fraction"),
        ({"row": N, "form": "replace"}, 400, "indices must lie in"),
        ({"row": 1, "seed": 2, "form": "replace"}, 400, "either row or seed"),
        ({"row": 1}, 400, "only with form=replace"),
        ({"form": "swap"}, 422, "form"),
    ],
)
async def test_bad_credit_requests_are_refused_and_change_nothing(
    api: Api, rng: np.random.Generator, params: dict, status: int, message: str
) -> None:
    await api.create("ref", rng)
    answer = await _credits(api, rng.normal(size=(4, D)), **params)
    assert answer.status_code == status, answer.text
    assert message in answer.text
    assert (await api.info("ref")).json()["version"] == 1


async def test_samples_beyond_the_limit_are_refused_by_their_header(
    settings: Settings, rng: np.random.Generator
) -> None:
    limited = make_settings(redis_url=settings.redis_url, max_samples=8)
    async with serving(limited) as api:
        await api.create("ref", rng)
        assert (await _credits(api, rng.normal(size=(8, D)))).status_code == 200
        answer = await _credits(api, rng.normal(size=(9, D)))
        assert answer.status_code == 413 and "limit of 8" in answer.text
        wrong = await _credits(api, rng.normal(size=(3, D + 1)))
        assert wrong.status_code == 400 and f"d={D}" in wrong.text


async def test_turnover_says_how_many_calls_renew_the_pool(
    api: Api, rng: np.random.Generator
) -> None:
    """Rows committed per reward call, and calls at that volume to renew N rows: in answers,
    reference info and /metrics; a call that commits nothing lowers the volume."""
    await api.create("ref", rng)
    samples = rng.normal(size=(20, D)).astype(np.float32)
    first = (await _credits(api, samples, commit_fraction=0.5, idempotency_key="a")).json()
    assert first["freshness"]["rows_per_call"] is None  # no call before it
    assert first["freshness"]["turnover_calls"] is None
    second = (await _credits(api, samples, commit_fraction=0.5, idempotency_key="b")).json()
    assert second["freshness"]["rows_per_call"] == 10.0
    assert second["freshness"]["turnover_calls"] == N / 10
    await _credits(api, samples)  # rewards only
    info = (await api.info("ref")).json()["freshness"]
    assert info["rows_per_call"] == 20 / 3 and info["turnover_calls"] == pytest.approx(N * 3 / 20)
    metrics = (await api.client.get("/metrics")).text
    assert f'distreward_pool_turnover_calls{{reference="ref"}} {N * 3 / 20}' in metrics


async def test_a_round_is_answered_at_the_version_its_first_request_found(
    api: Api, rng: np.random.Generator
) -> None:
    """The ranks of one step send one round: each commits its share, yet every request of the
    round scores against the pool the round began with, and says how far that lags; the next
    round holds every commit of this one."""
    await api.create("ref", rng)
    samples = rng.normal(0.3, 1.0, size=(20, D)).astype(np.float32)
    first = (
        await _credits(api, samples, round="run-1/0", commit_fraction=0.5, idempotency_key="a")
    ).json()
    began = first["version"]
    assert first["committed"]["version"] == began + 1 and first["lag"] == {"versions": 0, "rows": 0}
    second = (
        await _credits(api, samples, round="run-1/0", commit_fraction=0.5, idempotency_key="b")
    ).json()
    assert second["version"] == began and second["committed"]["version"] == began + 2
    assert second["lag"] == {"versions": 1, "rows": 10}
    np.testing.assert_allclose(second["rewards"], first["rewards"], rtol=1e-12, atol=1e-15)
    later = (await _credits(api, samples, round="run-1/1")).json()
    assert later["version"] == began + 2 and later["lag"] == {"versions": 0, "rows": 0}
    # Read your writes: an after beyond anything committed is refused, not silently served.
    beyond = await _credits(api, samples, after=began + 5)
    assert beyond.status_code == 409 and f"after={began + 5}" in beyond.text
    info = (await api.info("ref")).json()
    assert info["lag"] == {"versions": 0, "rows": 0}
    refused = await _credits(api, samples, round="bad round!")
    assert refused.status_code == 422
