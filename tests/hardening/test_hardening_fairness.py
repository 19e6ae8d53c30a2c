"""Fair sharing between tokens, on a real service process: while one trainer token floods the
service, another token's requests keep their latency within 2x of the idle figure measured in
the same run.

The service runs with its shipped defaults (but for the tokens, the memory store and a short
``Retry-After``). Why the margin is wide, on a busy 2-core machine too:

* The guarantee is structural. The default is one compute slot
  (``DISTREWARD_MAX_CONCURRENT_COMPUTE``), given out round robin between tokens: when the
  flood's call in progress ends, the other token's waiting request goes next, ahead of the
  flood's queued ones. So the other token waits at most for one flood call, and its own call
  then runs alone, on every core: no two tokens' computations share the machine. (With two
  slots, one a token, the flood never took the other token's slot, but its computation beside
  the other's slowed the other's on these 2 vCPUs: ratios of 1.3 to 2.4 under a load average
  of 6 to 8, where one slot gave 0.8 to 1.6; so one slot is the default.)
* The flood's calls are an eighth of the other token's (1 group against 8 on the exact path
  at d = 512), so the wait for the slot adds on average a sixteenth of the idle latency and at
  most an eighth. A flood of larger calls is what the cost bound
  (``DISTREWARD_MAX_REQUEST_GFLOP``) bounds; the wait is always at most one call.
* The flood's requests beyond its share of 4 in flight are answered 429 at admission, before
  their bodies are read, and it honours ``Retry-After`` (the project's client, as a trainer):
  its refusals cost the event loop a few requests a second.
* The other token's requests are dominated by their computation (eight 512 x 512
  eigendecompositions, a few hundred milliseconds) rather than by HTTP overhead (about a
  millisecond).
* Medians of 12 requests per figure, the idle figure from requests before and after the flood,
  so that a change in the machine's load during the run does not land on one side.
"""

from __future__ import annotations

import io
import re
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

import reward_client as rc
from support.launch import ServiceProcess

pytestmark = pytest.mark.slow

ADMIN = "fairness-admin-token-000001"
FLOOD = "fairness-flood-token-000001"
OTHER = "fairness-other-token-000001"
NAME, D, POOL = "fair", 512, 2048
FLOOD_THREADS = 8  # twice the token's share of requests in flight


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        tmp_path_factory.mktemp("fairness") / "service.log",
        {
            "DISTREWARD_REDIS_URL": "",
            "DISTREWARD_ADMIN_TOKENS": ADMIN,
            "DISTREWARD_TOKENS": f"{FLOOD},{OTHER}",
            "DISTREWARD_RETRY_AFTER_SECONDS": "1",
            "DISTREWARD_LOG_LEVEL": "warning",
        },
    )
    try:
        process.wait_ready(timeout=120)
        rng = np.random.default_rng(0)
        with rc.RewardClient(process.url, token=ADMIN) as admin:
            stats = io.BytesIO()
            np.savez(stats, mu=np.full(D, 0.1), sigma=np.eye(D))
            answer = httpx.put(
                f"{process.url}/v1/references/{NAME}/target?accept_unknown_feature_space=true",
                content=stats.getvalue(),
                headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/x-npz"},
                timeout=120,
            )
            assert answer.status_code == 200, answer.text
            admin.put_pool(NAME, rng.standard_normal((POOL, D)).astype(np.float32))
        yield process
    finally:
        process.stop(timeout=30)


def _latency(client: rc.RewardClient, groups: np.ndarray) -> float:
    start = time.perf_counter()
    client.rewards(NAME, groups, method="exact", seed=1)
    return time.perf_counter() - start


def test_a_flooding_token_leaves_another_tokens_latency_within_2x_of_idle(
    service: ServiceProcess,
) -> None:
    rng = np.random.default_rng(1)
    small = rng.standard_normal((8, 16, D)).astype(np.float32)
    heavy = rng.standard_normal((1, 16, D)).astype(np.float32)
    config = rc.ClientConfig(timeout=300, retries=1000, backoff=0.2, max_backoff=2.0)
    with rc.RewardClient(service.url, token=OTHER, config=config) as other:
        _latency(other, small)  # warm-up: first-call allocations
        idle = [_latency(other, small) for _ in range(6)]

        stop, served = threading.Event(), threading.Event()

        def flood() -> None:
            with rc.RewardClient(service.url, token=FLOOD, config=config) as client:
                while not stop.is_set():
                    client.rewards(NAME, heavy, method="exact", seed=2)
                    served.set()

        threads = [threading.Thread(target=flood) for _ in range(FLOOD_THREADS)]
        for thread in threads:
            thread.start()
        # The flood holds its slot and its share of requests in flight once one is answered.
        assert served.wait(timeout=120), service.log_tail()
        flooded = [_latency(other, small) for _ in range(12)]
        stop.set()
        for thread in threads:
            thread.join()
        idle += [_latency(other, small) for _ in range(6)]

    metrics = httpx.get(f"{service.url}/metrics", timeout=30).text
    refused = re.search(
        r'^distreward_rejections_total\{reason="token_in_flight"\} (\S+)$', metrics, re.MULTILINE
    )
    assert refused and float(refused[1]) >= 1  # the flood went beyond its share, was refused
    idle_median, flooded_median = statistics.median(idle), statistics.median(flooded)
    assert flooded_median <= 2 * idle_median, (idle, flooded)
