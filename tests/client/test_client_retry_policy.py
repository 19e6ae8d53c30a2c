"""The retry policy as pure functions: classification, waits, Retry-After parsing."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from reward_client import ServiceUnavailable
from reward_client._retry import backoff_delay, failure_kind, parse_retry_after

REQUEST = httpx.Request("POST", "http://service.test/v1/references/ref/commit")


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (httpx.Response(503), "retry"),
        (httpx.Response(429), "retry"),
        (httpx.Response(502), "ambiguous"),
        (httpx.Response(504), "ambiguous"),
        (httpx.Response(500), "final"),
        (httpx.Response(404), "final"),
        (httpx.Response(409), "final"),
        (httpx.ConnectError("refused", request=REQUEST), "retry"),
        (httpx.ConnectTimeout("slow", request=REQUEST), "retry"),
        (httpx.PoolTimeout("busy", request=REQUEST), "retry"),
        (httpx.ReadTimeout("slow", request=REQUEST), "ambiguous"),
        (httpx.WriteTimeout("slow", request=REQUEST), "ambiguous"),
        (httpx.ReadError("reset", request=REQUEST), "ambiguous"),
        (httpx.RemoteProtocolError("closed", request=REQUEST), "ambiguous"),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), "final"),
    ],
)
def test_failure_kind(reply, kind):
    assert failure_kind(reply) == kind


def test_backoff_grows_with_equal_jitter_and_is_capped():
    rng = random.Random(0)
    for attempt in range(1, 8):
        step = 0.1 * 2 ** (attempt - 1)
        delay = backoff_delay(attempt, None, backoff=0.1, max_backoff=2.0, rng=rng)
        assert min(step / 2, 2.0) <= delay <= min(step, 2.0)


def test_retry_after_is_a_floor_spread_by_one_backoff():
    error = ServiceUnavailable(503, "store down", retry_after=2.0)
    delays = [
        backoff_delay(1, error, backoff=0.1, max_backoff=30.0, rng=random.Random(seed))
        for seed in range(20)
    ]
    assert all(2.0 <= d <= 2.1 for d in delays)
    assert len(set(delays)) > 1  # not all at once
    assert backoff_delay(1, error, backoff=0.1, max_backoff=1.0, rng=random.Random()) == 1.0


def test_parse_retry_after():
    assert parse_retry_after(None) is None
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    wait = parse_retry_after(format_datetime(later, usegmt=True))
    assert wait is not None and 25 <= wait <= 30
