"""What the client puts on the wire (docs/API.md), and what it makes of the answers."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import httpx
import numpy as np
import pytest
from client_fakes import TOKEN, FakeService, commit_json, info_json, npy_body, ok, rewards_json

import reward_client as rc

GROUPS = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)


def test_rewards_binary_request(client_for):
    fake = FakeService(ok(rewards_json([0.5, -0.5], k=3)))
    client_for(fake).rewards("ref", GROUPS, mode="shared", seed=11, method="exact")
    (request,) = fake.requests
    assert request.method == "POST"
    assert request.url.path == "/v1/references/ref/rewards"
    assert request.headers["Content-Type"] == "application/x-npy"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert dict(request.url.params) == {"mode": "shared", "seed": "11", "method": "exact"}
    body = npy_body(request)
    assert body.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(body, GROUPS.astype(np.float32))


def test_rewards_json_request(client_for):
    fake = FakeService(ok(rewards_json([0.5, -0.5], k=3)))
    client_for(fake, binary=False).rewards("ref", GROUPS, seed=3)
    (request,) = fake.requests
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.content)
    assert body == {"groups": GROUPS.tolist(), "seed": 3}  # unset options left to the service


def test_float16_wire_dtype(client_for):
    fake = FakeService(ok(rewards_json([0.5, -0.5], k=3)))
    client_for(fake, wire_dtype="float16").rewards("ref", GROUPS)
    assert npy_body(fake.requests[0]).dtype == np.dtype("<f2")


def test_shared_indices_go_in_the_query_string(client_for):
    fake = FakeService(ok(rewards_json([0.5, -0.5], k=3)))
    client_for(fake).rewards("ref", GROUPS, indices=[[4, 9, 2], [4, 9, 2]])
    params = fake.requests[0].url.params
    assert params["indices"] == "4,9,2"
    assert params["mode"] == "indices"


def test_per_group_indices_fall_back_to_json(client_for):
    fake = FakeService(ok(rewards_json([0.5, -0.5], k=3)))
    client_for(fake).rewards("ref", GROUPS, indices=np.array([[1, 2, 3], [4, 5, 6]]))
    request = fake.requests[0]
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.content)
    assert body["indices"] == [[1, 2, 3], [4, 5, 6]]
    assert body["mode"] == "indices"


def test_version_pin_from_config_and_per_call(client_for):
    fake = FakeService(ok(rewards_json([0.5, -0.5], k=3, version=4)))
    client = client_for(fake, version=4)
    client.rewards("ref", GROUPS)
    client.rewards("ref", GROUPS, version=5)
    assert [r.url.params["version"] for r in fake.requests] == ["4", "5"]


def test_rewards_are_decoded(client_for):
    fake = FakeService(ok(rewards_json([1.0, 3.0], k=3)))
    batch = client_for(fake).rewards("ref", GROUPS)
    assert isinstance(batch, rc.RewardBatch)
    assert len(batch) == 2
    np.testing.assert_array_equal(batch.rewards, [1.0, 3.0])
    np.testing.assert_allclose(batch.advantages, [-1.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(batch.fds, [11.5, 9.5])
    assert batch.indices.shape == (2, 3) and batch.indices.dtype == np.int64
    assert batch.methods_used == ("lowrank", "lowrank")
    assert (batch.version, batch.seed, batch.base_fd) == (1, 7, 12.5)
    assert batch.timing == rc.Timing(compute_seconds=0.01, total_seconds=0.02)
    with pytest.raises(ValueError):
        batch.rewards[0] = 0.0  # results are read-only


def test_commit_binary_and_json(client_for):
    fake = FakeService(ok(commit_json()))
    client_for(fake).commit("ref", np.ones((2, 4)), idempotency_key="k1")
    client_for(fake, binary=False).commit("ref", np.ones((2, 4)), idempotency_key="k2")
    binary, as_json = fake.requests
    assert binary.headers["Idempotency-Key"] == "k1"
    assert as_json.headers["Idempotency-Key"] == "k2"  # in its header in either format
    assert json.loads(as_json.content) == {"features": np.ones((2, 4)).tolist()}


def test_fd_and_info_and_list(client_for):
    fake = FakeService(
        ok({"reference": "ref", "version": 3, "fd": 4.25, "n": 10}),
        ok(info_json(version=3)),
        ok({"references": [info_json("a"), info_json("b")]}),
    )
    client = client_for(fake)
    assert client.fd("ref", np.ones((10, 4))) == rc.FDResult("ref", 3, 4.25, 10)
    info = client.info("ref")
    assert info.created_at == datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)
    assert (info.d, info.n, info.version, info.base_fd, info.stale) == (4, 100, 3, 12.5, False)
    assert [r.name for r in client.list_references()] == ["a", "b"]
    assert [r.url.path for r in fake.requests] == [
        "/v1/references/ref/fd",
        "/v1/references/ref",
        "/v1/references",
    ]


def test_delete(client_for):
    fake = FakeService(httpx.Response(204))
    assert client_for(fake).delete("ref") is None
    assert fake.requests[0].method == "DELETE"


def test_put_target_statistics_as_npz_in_float64(client_for):
    fake = FakeService(ok(info_json(n=0)))
    mu, sigma = np.ones(4, dtype=np.float32), np.eye(4, dtype=np.float32)
    client_for(fake).put_target("ref", mu=mu, sigma=sigma)
    request = fake.requests[0]
    assert request.method == "PUT" and request.url.path == "/v1/references/ref/target"
    assert request.headers["Content-Type"] == "application/x-npz"
    archive = np.load(io.BytesIO(request.content), allow_pickle=False)
    assert archive["sigma"].dtype == np.float64
    np.testing.assert_array_equal(archive["mu"], mu)


def test_put_target_features_and_json(client_for):
    fake = FakeService(ok(info_json(n=0)))
    client_for(fake).put_target("ref", features=np.ones((5, 4)))
    client_for(fake, binary=False).put_target("ref", mu=np.zeros(2), sigma=np.eye(2))
    assert npy_body(fake.requests[0]).shape == (5, 4)
    assert json.loads(fake.requests[1].content) == {"mu": [0.0, 0.0], "sigma": [[1, 0], [0, 1]]}


def test_put_target_needs_stats_or_features(client_for):
    client = client_for(FakeService(ok(info_json())))
    with pytest.raises(ValueError, match="mu and sigma"):
        client.put_target("ref", mu=np.zeros(2))
    with pytest.raises(ValueError, match="not both"):
        client.put_target("ref", mu=np.zeros(2), sigma=np.eye(2), features=np.ones((3, 2)))


class Staging:
    """Stand-in for the service's staged pool upload: counts rows, answers per the contract."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        rows = npy_body(request).shape[0]
        self.rows = rows if request.method == "PUT" else self.rows + rows
        if request.url.params["final"] == "true":
            return ok(info_json(n=self.rows))
        return ok({"staged_rows": self.rows})


def test_pool_upload_in_chunks(client_for):
    fake = FakeService(Staging())
    info = client_for(fake).put_pool("ref", np.ones((10, 4)), chunk_rows=4)
    assert info.n == 10
    sent = [(r.method, r.url.params["final"], npy_body(r).shape[0]) for r in fake.requests]
    assert sent == [("PUT", "false", 4), ("POST", "false", 4), ("POST", "true", 2)]


def test_pool_upload_in_one_piece_by_default(client_for):
    fake = FakeService(Staging())
    client_for(fake).put_pool("ref", np.ones((10, 4)))
    assert [(r.method, r.url.params["final"]) for r in fake.requests] == [("PUT", "true")]


def test_pool_chunk_size_follows_chunk_bytes(client_for):
    fake = FakeService(Staging())
    client_for(fake, chunk_bytes=4 * 4 * 3).put_pool("ref", np.ones((7, 4)))  # 3 float32 rows
    assert [npy_body(r).shape[0] for r in fake.requests] == [3, 3, 1]


def test_pool_upload_restarts_when_a_chunk_may_have_been_applied(client_for):
    # The second chunk times out after it may have reached the service: resending it could
    # stage it twice, so the upload starts again from the PUT.
    staging = Staging()
    fake = FakeService(staging, httpx.ReadTimeout, staging)
    info = client_for(fake).put_pool("ref", np.ones((10, 4)), chunk_rows=5)
    assert info.n == 10
    assert [r.method for r in fake.requests] == ["PUT", "POST", "PUT", "POST"]


def test_pool_chunk_refused_with_503_is_resent(client_for):
    staging = Staging()
    fake = FakeService(staging, httpx.Response(503), staging)
    client_for(fake).put_pool("ref", np.ones((10, 4)), chunk_rows=5)
    assert [r.method for r in fake.requests] == ["PUT", "POST", "POST"]


def test_pool_staged_count_mismatch_is_a_protocol_error(client_for):
    fake = FakeService(ok({"staged_rows": 3}))
    with pytest.raises(rc.ProtocolError, match="staged 3 rows"):
        client_for(fake).put_pool("ref", np.ones((10, 4)), chunk_rows=5)


def test_bad_reference_name_is_refused_before_sending(client_for):
    fake = FakeService(ok(info_json()))
    with pytest.raises(ValueError, match="reference name"):
        client_for(fake).info("../admin")
    assert fake.count == 0


def test_probes(client_for):
    fake = FakeService(
        ok({"status": "ok"}),
        ok({"status": "ready", "store": "memory", "references": 2}),
        httpx.Response(503, json={"status": "unavailable", "store": "redis"}),
        httpx.ConnectError,
    )
    client = client_for(fake)
    assert client.health() is True
    assert client.ready() == rc.Readiness(ready=True, store="memory", references=2)
    assert client.ready() == rc.Readiness(ready=False, store="redis", references=None)
    assert client.health() is False  # unreachable: probes report, they do not raise
    assert client.ready().ready is False
    assert fake.count == 5  # probes are never retried


def test_wait_ready_polls_until_ready(client_for):
    fake = FakeService(httpx.ConnectError, httpx.Response(503), ok({"status": "ready"}))
    assert client_for(fake).wait_ready(timeout=5, interval=0.001).ready
    assert fake.count == 3


def test_wait_ready_times_out(client_for):
    with pytest.raises(rc.RequestTimeout):
        client_for(FakeService(httpx.ConnectError)).wait_ready(timeout=0.05, interval=0.01)
