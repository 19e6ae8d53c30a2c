"""Every error of the client survives pickling as an equal one, also across a process pool,
where a worker's error would otherwise break the pool and hide its message."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

import reward_client
from reward_client._exceptions import error_for_status
from reward_client._retry import MaybeApplied

ERRORS = [
    reward_client.RewardClientError("anything"),
    reward_client.TransportError("connection refused"),
    reward_client.RequestTimeout("no answer in 60 s"),
    reward_client.ProtocolError("answer is not JSON"),
    # What a pool upload raises when its restarts run out (a TransportError).
    MaybeApplied("POST /v1/references/r/pool: timed out (not resent: it may have been applied)"),
    reward_client.ServiceUnavailable(503, "store down", retry_after=2.0, method="POST", url="/x"),
    reward_client.TooManyRequests(429, "share in use", retry_after=1.5),
    reward_client.ServerError(500, "internal error"),
    *(
        error_for_status(status, f"detail {status}", method="GET", url="/v1/references/r")
        for status in (400, 401, 403, 404, 409, 413, 415, 418, 422, 502, 504)
    ),
    error_for_status(409, "pinned 3, at 4", version_pinned=True),
]


def _equal(a: BaseException, b: BaseException) -> bool:
    return type(a) is type(b) and a.args == b.args and a.__dict__ == b.__dict__


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_pickles_to_an_equal_one(error: BaseException) -> None:
    restored = pickle.loads(pickle.dumps(error))
    assert _equal(restored, error) and str(restored) == str(error)
    if isinstance(error, reward_client.APIError):
        assert restored == error and restored.detail == error.detail


def _raise(status: int) -> None:
    raise error_for_status(status, "the reference has no pool yet: upload one first")


def test_an_error_raised_in_a_worker_process_reaches_the_caller_whole() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        with pytest.raises(reward_client.Conflict) as caught:
            pool.submit(_raise, 409).result(timeout=60)
        assert caught.value.status_code == 409 and "no pool yet" in caught.value.detail
        assert pool.submit(abs, -1).result(timeout=60) == 1  # the pool still works
