"""Retries: the policy, as pure functions of one failed attempt, and the loops that apply it.

Which failures are worth another try, which exception describes a failure, and how long to
wait (`failure_kind`, `error_for_reply`, `backoff_delay`), kept free of I/O and of client
state so that tests can pin them down directly; and the loops both clients run their
requests through, as operations of `_protocol` that yield the waits they want: `exchange`
resends one request, `restarting` starts over an operation whose request may have been applied.
"""

from __future__ import annotations

import email.utils
import logging
import random
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Literal, TypeVar

import httpx

from ._config import ClientConfig
from ._exceptions import (
    RETRYABLE_STATUSES,
    ProtocolError,
    RequestTimeout,
    RewardClientError,
    ServiceUnavailable,
    TransportError,
    error_for_status,
)
from ._protocol import Call, Op, Reply, Sleep

__all__ = [
    "FailureKind",
    "MaybeApplied",
    "backoff_delay",
    "detail_of",
    "error_for_reply",
    "exchange",
    "failure_kind",
    "parse_retry_after",
    "restarting",
]

logger = logging.getLogger("reward_client")

T = TypeVar("T")

#: ``"retry"``: the service did not apply the request and may later; ``"ambiguous"``: it may
#: have applied it; ``"final"``: trying again would fail the same way.
FailureKind = Literal["retry", "ambiguous", "final"]

# Failures after which the request may or may not have reached the service (checked after
# _NOT_SENT, whose members are also network errors / timeouts).
_AMBIGUOUS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# Failures that prove it did not: nothing was sent.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def failure_kind(reply: Reply) -> FailureKind:
    """What a failed attempt says about the request (see `FailureKind`)."""
    if isinstance(reply, httpx.Response):
        if reply.status_code in (429, 503):  # the service's own "not now": nothing was applied
            return "retry"
        # A gateway's 502 / 504 may hide a request that reached the service.
        return "ambiguous" if reply.status_code in RETRYABLE_STATUSES else "final"
    if isinstance(reply, _NOT_SENT):
        return "retry"
    return "ambiguous" if isinstance(reply, _AMBIGUOUS) else "final"


def error_for_reply(call: Call, reply: Reply) -> RewardClientError:
    """The exception that describes a failed attempt."""
    where = f"{call.method} {call.path}"
    if isinstance(reply, httpx.TimeoutException):
        return RequestTimeout(f"{where}: timed out ({type(reply).__name__})")
    if isinstance(reply, httpx.RequestError):
        return TransportError(f"{where}: {type(reply).__name__}: {reply}")
    if reply is None:  # a driver bug, not a service answer
        return ProtocolError(f"{where}: no reply")
    return error_for_status(
        reply.status_code,
        detail_of(reply),
        retry_after=parse_retry_after(reply.headers.get("Retry-After")),
        version_pinned=call.version_pinned,
        method=call.method,
        url=call.path,
    )


def detail_of(response: httpx.Response) -> str:
    """The service's explanation: ``detail`` of its JSON error body, else the raw text."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text[:500] or response.reason_phrase
    if isinstance(detail, list):  # FastAPI's validation errors: a list of {loc, msg, ...}
        return "; ".join(
            f"{'.'.join(map(str, d.get('loc', ())))}: {d.get('msg', d)}"
            if isinstance(d, dict)
            else str(d)
            for d in detail
        )
    return str(detail)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def backoff_delay(
    attempt: int,
    error: RewardClientError | None,
    *,
    backoff: float,
    max_backoff: float,
    rng: random.Random,
) -> float:
    """Seconds before retry number ``attempt`` (1-based).

    "Equal jitter" backoff: half of ``backoff * 2**(attempt-1)`` fixed, half random, so
    trainers that failed together do not come back together. A ``Retry-After`` is a floor,
    spread by up to one ``backoff`` for the same reason. Capped at ``max_backoff``.
    """
    step = backoff * 2.0 ** (attempt - 1)
    delay = step / 2 + rng.uniform(0, step / 2)
    if isinstance(error, ServiceUnavailable) and error.retry_after is not None:
        delay = max(delay, error.retry_after + rng.uniform(0, backoff))
    return min(delay, max_backoff)


class MaybeApplied(TransportError):
    """A request that must not be applied twice failed in a way that may have applied it
    (read timeout, connection lost after sending, gateway 502 / 504). The operation that sent
    it decides how to recover (`restarting`); resending the same request is not an option."""


def exchange(call: Call, config: ClientConfig, rng: random.Random) -> Op[httpx.Response]:
    """Send ``call`` until it gets a 2xx; retry what is worth retrying, raise the rest.

    Retried: 429 / 502 / 503 / 504 and failures to reach the service, up to
    ``config.retries`` times, waiting an exponentially growing, jittered delay (at least
    what ``Retry-After`` asks for). Never retried: any other 4xx or 5xx. A call that is not
    replay-safe is not resent after a failure that may have applied it: that raises
    `MaybeApplied` for the operation to recover from as a whole.
    """
    attempt = 0
    while True:
        reply = yield call
        if isinstance(reply, httpx.Response) and reply.is_success:
            return reply
        error = error_for_reply(call, reply)
        cause = reply if isinstance(reply, httpx.RequestError) else None
        kind = failure_kind(reply)
        if kind == "ambiguous" and not call.replay_safe:
            message = f"{error} (not resent: it may have been applied)"
            raise MaybeApplied(message) from (error if cause is None else cause)
        attempt += 1
        if kind == "final" or attempt > config.retries:
            raise error from cause
        delay = _delay(attempt, error, config, rng)
        logger.warning("%s; retry %d of %d in %.2f s", error, attempt, config.retries, delay)
        yield Sleep(delay)


def restarting(
    start: Callable[[], Op[T]], what: str, config: ClientConfig, rng: random.Random
) -> Op[T]:
    """Run the operation ``start()`` makes, and start it over (a fresh one, after a backoff
    delay) when one of its requests may have been applied, up to ``config.retries`` times:
    for an operation whose first request resets what the others did (a pool upload's PUT)."""
    restarts = 0
    while True:
        try:
            return (yield from start())
        except MaybeApplied as exc:
            restarts += 1
            if restarts > config.retries:
                raise
            delay = _delay(restarts, exc, config, rng)
            logger.warning("%s interrupted (%s); restarting in %.2f s", what, exc, delay)
            yield Sleep(delay)


def _delay(
    attempt: int, error: RewardClientError, config: ClientConfig, rng: random.Random
) -> float:
    return backoff_delay(
        attempt, error, backoff=config.backoff, max_backoff=config.max_backoff, rng=rng
    )
