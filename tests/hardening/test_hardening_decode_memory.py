"""Bounded decoding, on a real service process: four concurrent 73 MB JSON reward requests (150
groups of 32 at d = 2048) are all answered and grow the process by at most 2.5 GiB (decoded
straight into float64, about 2x the text, instead of Python lists, about 6.5x: 4.0 GiB before);
a larger flood from the same token is answered 200 or 429, never by running out of memory.

No timing is asserted: memory is the process's own peak (``VmHWM``), and every request is let to
finish however slow the machine is. The same rounds are ``make bench``'s
(``benchmarks/bench_memory.py``), which prints the figures beside the ``.npy`` ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from benchmarks.bench_memory import GIB, burst, memory_service, reward_bodies
from support.launch import ServiceProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log = tmp_path_factory.mktemp("decode-memory") / "service.log"
    with memory_service(log) as process:
        yield process


@pytest.fixture(scope="module")
def json_body() -> bytes:
    text, _ = reward_bodies()
    assert 70e6 < len(text) < 80e6  # the 73 MB of the measurement this bounds
    return text


def test_four_concurrent_73_mb_json_requests_are_answered_within_2_5_gib(
    service: ServiceProcess, json_body: bytes
) -> None:
    measured = burst(service, json_body, "application/json", 4)
    assert measured.statuses == [200] * 4, service.log_tail()
    assert measured.growth_bytes <= 2.5 * GIB, f"{measured.growth_bytes / GIB:.2f} GiB"


def test_a_larger_flood_is_answered_429_beyond_the_tokens_share_never_by_an_oom(
    service: ServiceProcess, json_body: bytes
) -> None:
    measured = burst(service, json_body, "application/json", 8)
    assert set(measured.statuses) <= {200, 429}, measured.statuses
    assert service.process.poll() is None  # alive: nothing was killed for memory
    assert measured.growth_bytes <= 2.5 * GIB, f"{measured.growth_bytes / GIB:.2f} GiB"
    refused = measured.statuses.count(429)
    metrics = httpx.get(f"{service.url}/metrics", timeout=30).text
    assert f'distreward_rejections_total{{reason="token_in_flight"}} {refused:.1f}' in metrics
