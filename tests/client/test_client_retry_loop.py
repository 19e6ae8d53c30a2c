"""The retry loops of `reward_client._retry`, driven by hand: what they send, when they wait,
when they give up, and when they start an operation over. No HTTP, no sleeping."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from client_fakes import config, error, ok

import reward_client as rc
from reward_client._protocol import Call, Done, Op, Reply, Sleep, advance
from reward_client._retry import MaybeApplied, exchange, restarting

CALL = Call("POST", "/v1/references/ref/rewards")
POST = Call("POST", "/v1/references/ref/pool", replay_safe=False)
REQUEST = httpx.Request("POST", "http://service.test/v1/references/ref/pool")


def drive(op: Op[Any], replies: list[Reply]) -> tuple[list[Call | Sleep], Any]:
    """Run ``op``, answering each `Call` with the next reply and each `Sleep` with None; the
    steps it took and what it returned."""
    steps: list[Call | Sleep] = []
    step = advance(op, None)
    while not isinstance(step, Done):
        steps.append(step)
        step = advance(op, replies.pop(0) if isinstance(step, Call) else None)
    return steps, step.value


def kinds(steps: list[Call | Sleep]) -> list[str]:
    return ["call" if isinstance(s, Call) else "sleep" for s in steps]


def test_a_success_is_returned_at_once() -> None:
    steps, response = drive(exchange(CALL, config(), random.Random(0)), [ok({})])
    assert steps == [CALL] and response.status_code == 200


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_busy_and_unavailable_answers_are_retried_after_a_wait(status: int) -> None:
    settings = config(backoff=0.1, max_backoff=1.0)
    steps, response = drive(exchange(CALL, settings, random.Random(0)), [error(status), ok({})])
    assert kinds(steps) == ["call", "sleep", "call"]
    assert steps[0] is steps[2] is CALL  # the same request, unchanged
    sleep = steps[1]
    assert isinstance(sleep, Sleep) and 0.05 <= sleep.seconds <= 0.1
    assert response.status_code == 200


def test_retry_after_sets_the_wait() -> None:
    replies: list[Reply] = [error(503, **{"Retry-After": "0.5"}), ok({})]
    steps, _ = drive(
        exchange(CALL, config(backoff=0.01, max_backoff=5.0), random.Random()), replies
    )
    assert isinstance(steps[1], Sleep) and 0.5 <= steps[1].seconds <= 0.51


@pytest.mark.parametrize("status", [400, 404, 409, 422, 500])
def test_other_errors_are_raised_without_a_retry(status: int) -> None:
    op = exchange(CALL, config(), random.Random(0))
    with pytest.raises(rc.APIError) as caught:
        drive(op, [error(status)])
    assert caught.value.status_code == status


def test_retries_give_up_after_config_retries() -> None:
    op = exchange(CALL, config(retries=2), random.Random(0))
    with pytest.raises(rc.ServiceUnavailable):
        drive(op, [error(503)] * 3)


def test_a_failure_to_connect_is_retried_and_translated_when_it_persists() -> None:
    refused = httpx.ConnectError("refused", request=REQUEST)
    op = exchange(CALL, config(retries=1), random.Random(0))
    with pytest.raises(rc.TransportError) as caught:
        drive(op, [refused, refused])
    assert caught.value.__cause__ is refused


@pytest.mark.parametrize("reply", [httpx.ReadTimeout("slow", request=REQUEST), httpx.Response(502)])
def test_a_call_that_may_have_been_applied_is_not_resent(reply: Reply) -> None:
    op = exchange(POST, config(), random.Random(0))
    with pytest.raises(MaybeApplied, match="not resent"):
        drive(op, [reply])


def test_a_call_that_was_not_sent_is_resent_even_if_not_replay_safe() -> None:
    refused = httpx.ConnectError("refused", request=REQUEST)
    steps, _ = drive(exchange(POST, config(), random.Random(0)), [refused, ok({})])
    assert kinds(steps) == ["call", "sleep", "call"]


def _upload(config_: rc.ClientConfig) -> Op[str]:
    """A two-request operation: a replay-safe PUT, then a POST that must not be resent."""
    yield from exchange(Call("PUT", "/p"), config_, random.Random(0))
    yield from exchange(POST, config_, random.Random(0))
    return "done"


def test_restarting_starts_the_operation_over_when_a_request_may_have_been_applied() -> None:
    settings = config()
    timeout = httpx.ReadTimeout("slow", request=REQUEST)
    op = restarting(lambda: _upload(settings), "upload", settings, random.Random(0))
    steps, result = drive(op, [ok({}), timeout, ok({}), ok({})])
    assert [s.method if isinstance(s, Call) else "sleep" for s in steps] == [
        "PUT", "POST", "sleep", "PUT", "POST",
    ]  # fmt: skip
    assert result == "done"


def test_restarting_gives_up_after_config_retries() -> None:
    settings = config(retries=1)
    timeout = httpx.ReadTimeout("slow", request=REQUEST)
    op = restarting(lambda: _upload(settings), "upload", settings, random.Random(0))
    with pytest.raises(MaybeApplied):
        drive(op, [ok({}), timeout, ok({}), timeout])
