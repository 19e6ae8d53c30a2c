"""A local cluster for the multi-process benchmarks (``load``, ``bench_rolling``): one
redis-server and service processes on it, on loopback, each client with a token of its own (the
service shares admission out per token), binary ``.npy`` bodies, and a reference built from
generated features (target fitted to shifted rows, then the pool in chunks)."""

from __future__ import annotations

import io
import json
import os
import platform
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from support.launch import RedisServer, ServiceProcess

__all__ = [
    "ADMIN_TOKEN",
    "CLIENT_TOKENS",
    "NPY_HEADERS",
    "LocalCluster",
    "admin_client",
    "bearer",
    "default_threads",
    "local_cluster",
    "machine",
    "metric",
    "npy",
    "percentile",
    "rebuild_count",
    "upload_reference",
    "warm",
]

# This run's tokens, nothing outside it needs them: one per client, as each trainer has its own.
CLIENT_TOKENS = [secrets.token_urlsafe(24) for _ in range(256)]
ADMIN_TOKEN = secrets.token_urlsafe(24)
NPY_HEADERS = {"Content-Type": "application/x-npy"}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def bearer(client: int) -> dict[str, str]:
    """The Authorization header of client number ``client``."""
    return {"Authorization": f"Bearer {CLIENT_TOKENS[client]}"}


def admin_client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=timeout)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def default_threads(processes: int) -> int:
    """Torch threads per process: the cores shared out among the processes. More threads than
    cores make every small operation (a commit's) wait on barriers of threads the scheduler has
    put aside."""
    return max(1, (os.cpu_count() or 1) // processes)


def finish(result: dict[str, Any], output: Path, summary: Callable[[dict[str, Any]], str]) -> int:
    """Write ``result`` to ``output`` as JSON, print its ``summary``; the exit status of a run
    whose checks passed (0) or not (1)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    print(f"written to {output}")
    return 0 if result["passed"] else 1


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_1m_after": os.getloadavg()[0],
    }


@dataclass(frozen=True)
class LocalCluster:
    redis_url: str
    urls: list[str]  # one per service process


@contextmanager
def local_cluster(
    *,
    processes: int,
    clients: int,
    threads: int,
    settings: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[LocalCluster]:
    """Redis and ``processes`` service processes on it, ready; stopped on exit. ``clients``
    trainer tokens (``CLIENT_TOKENS[:clients]``) and the admin token are configured;
    ``settings`` are further ``DISTREWARD_*`` variables. The processes' logs are kept in
    ``log_dir`` (``service-<i>.log``) when one is given."""
    env = {
        "DISTREWARD_TOKENS": ",".join(CLIENT_TOKENS[:clients]),
        "DISTREWARD_ADMIN_TOKENS": ADMIN_TOKEN,
        "DISTREWARD_MAX_BODY_BYTES": str(1 << 30),
        "DISTREWARD_REDIS_TIMEOUT_SECONDS": "30",  # pool chunks of tens of MB at d = 2048
        "DISTREWARD_LOG_LEVEL": "warning",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        **(settings or {}),
    }
    with tempfile.TemporaryDirectory(prefix="distreward-bench-") as scratch, ExitStack() as stack:
        directory = Path(scratch)
        redis = RedisServer(directory)
        redis.start()
        stack.callback(redis.stop)
        env["DISTREWARD_REDIS_URL"] = redis.url
        logs = directory if log_dir is None else log_dir
        procs = [ServiceProcess(logs / f"service-{i}.log", env) for i in range(processes)]
        for proc in procs:
            stack.callback(proc.stop)
        for proc in procs:
            proc.wait_ready(timeout=300)
        yield LocalCluster(redis.url, [proc.url for proc in procs])


async def upload_reference(
    admin: httpx.AsyncClient, url: str, name: str, *, d: int, pool: int, chunk_rows: int
) -> int:
    """Target fitted to shifted rows, then a pool of ``pool`` N(0, 1) rows in chunks; returns
    the published version."""
    rng = np.random.default_rng(0)
    real = rng.normal(0.1, 1.0, size=(max(2 * d, 64), d)).astype(np.float32)
    # Synthetic rows of no network's feature space: the reference records "unknown".
    answer = await admin.put(
        f"{url}/v1/references/{name}/target",
        content=npy(real),
        headers=NPY_HEADERS,
        params={"accept_unknown_feature_space": "true"},
    )
    answer.raise_for_status()
    starts = list(range(0, pool, chunk_rows))
    for i, start in enumerate(starts):
        chunk = rng.normal(size=(min(chunk_rows, pool - start), d))
        answer = await admin.request(
            "PUT" if i == 0 else "POST",
            f"{url}/v1/references/{name}/pool",
            content=npy(chunk.astype(np.float32)),
            headers=NPY_HEADERS,
            params={"final": str(i == len(starts) - 1).lower()},
        )
        answer.raise_for_status()
    return int(answer.json()["version"])


async def warm(client: httpx.AsyncClient, urls: list[str], name: str) -> None:
    """Every process loads the reference (and builds its engine) before a clock starts."""
    for url in urls:
        (await client.get(f"{url}/v1/references/{name}")).raise_for_status()


async def metric(client: httpx.AsyncClient, url: str, sample: str) -> float | None:
    """The value of the process's /metrics sample ``sample`` (name and labels as the text
    format writes them); None when it has none."""
    answer = await client.get(f"{url}/metrics")
    prefix = sample + " "
    for line in answer.text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


async def rebuild_count(client: httpx.AsyncClient, url: str, name: str) -> int | None:
    """The process's count of version precomputes built for ``name``."""
    value = await metric(client, url, f'distreward_rebuilds_total{{reference="{name}"}}')
    return None if value is None else int(value)
