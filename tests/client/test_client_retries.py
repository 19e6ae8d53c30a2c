"""Error mapping and the retry policy, against both clients.

Policy under test: 4xx other than 429, and 5xx other than 502 / 503 / 504, are raised at once,
as their own exception class; 503 (and 502 / 504), 429 and failures to reach the service are
retried with backoff, honouring Retry-After; a commit keeps its idempotency key across its
retries.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from client_fakes import FakeService, commit_json, error, info_json, ok, rewards_json

import reward_client as rc

GROUPS = np.zeros((2, 2, 4), dtype=np.float32)


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (400, rc.BadRequest),
        (401, rc.Unauthorized),
        (403, rc.Forbidden),
        (404, rc.NotFound),
        (409, rc.Conflict),
        (413, rc.PayloadTooLarge),
        (415, rc.UnsupportedMediaType),
        (422, rc.UnprocessableEntity),
        (418, rc.ClientRequestError),
        (500, rc.ServerError),
    ],
)
def test_error_status_raises_its_class_without_retry(client_for, status, exc_type):
    fake = FakeService(error(status, "what to fix"), ok(rewards_json([1.0, 2.0])))
    client = client_for(fake)
    with pytest.raises(exc_type) as caught:
        client.rewards("ref", GROUPS)
    assert type(caught.value) is exc_type
    assert caught.value.status_code == status
    assert caught.value.detail == "what to fix"
    assert "what to fix" in str(caught.value)
    assert fake.count == 1  # never retried


def test_conflict_on_pinned_request_is_version_mismatch(client_for):
    fake = FakeService(error(409, "pool is at version 8, request pinned 7"))
    client = client_for(fake)
    with pytest.raises(rc.VersionMismatch, match="version 8"):
        client.rewards("ref", GROUPS, version=7)
    assert fake.count == 1


def test_validation_error_list_is_readable(client_for):
    detail = [{"loc": ["query", "seed"], "msg": "not an integer", "type": "int_parsing"}]
    client = client_for(FakeService(error(422, detail)))
    with pytest.raises(rc.UnprocessableEntity, match=r"query\.seed: not an integer"):
        client.info("ref")


def test_503_is_retried_until_success(client_for):
    fake = FakeService(error(503), error(503), ok(info_json()))
    assert client_for(fake).info("ref").version == 1
    assert fake.count == 3


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_are_retried(client_for, status):
    fake = FakeService(error(status), ok(info_json()))
    assert client_for(fake).info("ref").n == 100
    assert fake.count == 2


def test_retry_after_is_honoured(client_for):
    fake = FakeService(error(503, "store down", **{"Retry-After": "0.3"}), ok(info_json()))
    client = client_for(fake, backoff=0.001, max_backoff=5.0)
    start = time.monotonic()
    client.info("ref")
    assert time.monotonic() - start >= 0.3


def test_429_is_retried_after_its_retry_after_and_then_raised_as_too_many_requests(client_for):
    too_many = error(429, "this token has 4 requests in flight", **{"Retry-After": "0.3"})
    fake = FakeService(too_many, ok(info_json()))
    start = time.monotonic()
    assert client_for(fake, backoff=0.001, max_backoff=5.0).info("ref").version == 1
    assert time.monotonic() - start >= 0.3
    fake = FakeService(error(429, "in flight", **{"Retry-After": "0"}))
    with pytest.raises(rc.TooManyRequests) as caught:  # a ServiceUnavailable: one except
        client_for(fake, retries=1).commit("ref", np.ones((2, 4)))
    assert isinstance(caught.value, rc.ServiceUnavailable)
    assert caught.value.retry_after == 0.0
    assert fake.count == 2


def test_retry_after_is_capped_by_max_backoff(client_for):
    fake = FakeService(error(503, **{"Retry-After": "3600"}), ok(info_json()))
    start = time.monotonic()
    client_for(fake, max_backoff=0.05).info("ref")
    assert time.monotonic() - start < 1.0


def test_exhausted_503_raises_service_unavailable(client_for):
    fake = FakeService(error(503, "store unreachable", **{"Retry-After": "0"}))
    with pytest.raises(rc.ServiceUnavailable) as caught:
        client_for(fake, retries=2).commit("ref", np.ones((2, 4)))
    assert caught.value.retry_after == 0.0
    assert fake.count == 3  # first try + 2 retries


@pytest.mark.parametrize(
    "failure", [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError]
)
def test_connection_errors_are_retried_then_raised(client_for, failure):
    fake = FakeService(failure)
    with pytest.raises(rc.TransportError) as caught:
        client_for(fake, retries=2).info("ref")
    assert isinstance(caught.value.__cause__, failure)
    assert fake.count == 3


def test_connection_error_then_success(client_for):
    fake = FakeService(httpx.ConnectError, httpx.ReadTimeout, ok(info_json()))
    assert client_for(fake).info("ref").name == "ref"
    assert fake.count == 3


def test_timeouts_raise_request_timeout(client_for):
    fake = FakeService(httpx.ReadTimeout)
    with pytest.raises(rc.RequestTimeout) as caught:
        client_for(fake, retries=1).fd("ref", np.ones((3, 4)))
    assert isinstance(caught.value, rc.TransportError)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert fake.count == 2


def test_unsupported_protocol_is_not_retried(client_for):
    fake = FakeService(httpx.UnsupportedProtocol)
    with pytest.raises(rc.TransportError):
        client_for(fake).info("ref")
    assert fake.count == 1


def test_commit_reuses_its_idempotency_key_across_retries(client_for):
    fake = FakeService(error(503), httpx.ReadTimeout, ok(commit_json()))
    result = client_for(fake).commit("ref", np.ones((2, 4)))
    keys = {r.headers["Idempotency-Key"] for r in fake.requests}
    assert len(fake.requests) == 3
    assert keys == {result.idempotency_key}
    assert len(result.idempotency_key) == 32  # a uuid4, hex


def test_each_commit_gets_its_own_key(client_for):
    fake = FakeService(ok(commit_json()))
    client = client_for(fake)
    first = client.commit("ref", np.ones((2, 4)))
    second = client.commit("ref", np.ones((2, 4)))
    assert first.idempotency_key != second.idempotency_key


def test_explicit_idempotency_key_and_replay_flag(client_for):
    fake = FakeService(ok(commit_json(replayed=True)))
    result = client_for(fake).commit("ref", np.ones((2, 4)), idempotency_key="step-41")
    assert fake.requests[0].headers["Idempotency-Key"] == "step-41"
    assert result.replayed and result.idempotency_key == "step-41"


def test_non_json_answer_is_a_protocol_error(client_for):
    fake = FakeService(httpx.Response(200, text="<html>proxy page</html>"))
    with pytest.raises(rc.ProtocolError):
        client_for(fake).info("ref")


def test_answer_missing_fields_is_a_protocol_error(client_for):
    body = rewards_json([1.0, 2.0])
    del body["advantages"]
    with pytest.raises(rc.ProtocolError, match="advantages"):
        client_for(FakeService(ok(body))).rewards("ref", GROUPS)


def test_every_error_is_a_reward_client_error():
    for name in rc.__all__:
        obj = getattr(rc, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, rc.RewardClientError)
