"""HTTP benchmark of the reward service: throughput and per-request overhead.

One service process (``python -m reward_service``, embedded memory store) holds a reference with
d = 2048 and a pool of 50,000 rows (uploaded in chunks). Measured:

* throughput: 4 concurrent clients send binary (``.npy``, float32) reward requests of 16 groups
  of 64 → rewarded samples per second;
* overhead apart from the engine: the same request sent one at a time as ``.npy`` and as JSON;
  overhead = client-observed latency minus the engine's ``compute_seconds`` (end to end: encode,
  transfer, decode, validate, respond), and the server's share (``total_seconds`` minus
  ``compute_seconds``: body read, decode, validation).

Writes ``benchmarks/results/service.json`` and prints a table. ``--quick`` shrinks everything
for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from support.launch import ServiceProcess

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "service.json"
TOKEN = "bench-admin-token-0123456789"
NAME = "bench"


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@contextmanager
def running_service(max_body_bytes: int) -> Iterator[str]:
    """The service as a subprocess (memory store) on a free port; yields its base URL. Its log
    goes to a temporary file whose tail is shown when it fails to start."""
    with tempfile.TemporaryDirectory() as folder:
        service = ServiceProcess(
            Path(folder) / "service.log",
            {
                "DISTREWARD_REDIS_URL": "",
                "DISTREWARD_ADMIN_TOKENS": TOKEN,
                "DISTREWARD_MAX_BODY_BYTES": str(max_body_bytes),
                "DISTREWARD_MAX_GROUP_SIZE": "4096",
                "DISTREWARD_LOG_LEVEL": "warning",
            },
        )
        try:
            service.wait_ready(timeout=120)
            yield service.url
        finally:
            service.stop(timeout=30)


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def _setup(client: httpx.AsyncClient, d: int, pool_rows: int, chunk_rows: int) -> float:
    """Target fitted to 2d shifted rows, then the pool in chunks; returns the publish seconds."""
    rng = np.random.default_rng(0)
    npy_headers = {"Content-Type": "application/x-npy"}
    real = rng.normal(0.1, 1.0, size=(2 * d, d)).astype(np.float32)
    # Synthetic rows of no network's feature space: the reference records "unknown".
    _check(
        await client.put(
            f"/v1/references/{NAME}/target",
            content=_npy(real),
            headers=npy_headers,
            params={"accept_unknown_feature_space": "true"},
        )
    )
    path = f"/v1/references/{NAME}/pool"
    starts = list(range(0, pool_rows, chunk_rows))
    publish = 0.0
    for i, start in enumerate(starts):
        rows = min(chunk_rows, pool_rows - start)
        chunk = rng.normal(size=(rows, d)).astype(np.float32)
        final = i == len(starts) - 1
        began = time.perf_counter()
        _check(
            await client.request(
                "PUT" if i == 0 else "POST",
                path,
                content=_npy(chunk),
                params={"final": str(final).lower()},
                headers=npy_headers,
            )
        )
        if final:
            publish = time.perf_counter() - began
    return publish


async def _throughput(
    client: httpx.AsyncClient, groups: np.ndarray, clients: int, requests_each: int
) -> dict[str, float]:
    body = _npy(groups)
    headers = {"Content-Type": "application/x-npy"}
    path = f"/v1/references/{NAME}/rewards"

    async def worker(worker_id: int) -> list[float]:
        latencies = []
        for step in range(requests_each):
            began = time.perf_counter()
            _check(
                await client.post(
                    path, content=body, headers=headers, params={"seed": worker_id * 1000 + step}
                )
            )
            latencies.append(time.perf_counter() - began)
        return latencies

    began = time.perf_counter()
    latencies = [x for xs in await asyncio.gather(*(worker(w) for w in range(clients))) for x in xs]
    wall = time.perf_counter() - began
    samples = clients * requests_each * groups.shape[0] * groups.shape[1]
    return {
        "requests": clients * requests_each,
        "wall_seconds": wall,
        "samples_per_second": samples / wall,
        "latency_p50_seconds": statistics.median(latencies),
        "latency_max_seconds": max(latencies),
    }


async def _overhead(client: httpx.AsyncClient, groups: np.ndarray, repeats: int) -> dict:
    """One request at a time, so queueing does not count as overhead."""
    path = f"/v1/references/{NAME}/rewards"
    results: dict[str, Any] = {}
    for wire in ("npy", "json"):
        rows = []
        for seed in range(repeats):
            began = time.perf_counter()
            if wire == "npy":
                response = await client.post(
                    path,
                    content=_npy(groups),
                    params={"seed": seed},
                    headers={"Content-Type": "application/x-npy"},
                )
            else:
                body = json.dumps({"groups": groups.tolist(), "seed": seed})
                response = await client.post(
                    path, content=body, headers={"Content-Type": "application/json"}
                )
            latency = time.perf_counter() - began
            timing = _check(response)["timing"]
            rows.append((latency, timing["total_seconds"], timing["compute_seconds"]))
        latency, total, compute = (statistics.median(col) for col in zip(*rows, strict=True))
        results[wire] = {
            "latency_seconds": latency,
            "compute_seconds": compute,
            "overhead_seconds": latency - compute,
            "server_overhead_seconds": total - compute,
            "overhead_fraction_of_compute": (latency - compute) / compute,
        }
    results["json_over_npy_overhead"] = (
        results["json"]["overhead_seconds"] / results["npy"]["overhead_seconds"]
    )
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    groups = (
        np.random.default_rng(1)
        .normal(0.05, 1.0, size=(args.groups, args.group_size, args.d))
        .astype(np.float32)
    )
    load_before = os.getloadavg()[0]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with running_service(max_body_bytes=1 << 30) as url:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
            publish = await _setup(client, args.d, args.pool, args.chunk_rows)
            await client.post(
                f"/v1/references/{NAME}/rewards",
                content=_npy(groups),
                headers={"Content-Type": "application/x-npy"},
            )  # warm-up
            throughput = await _throughput(client, groups, args.clients, args.requests)
            overhead = await _overhead(client, groups, args.repeats)
    return {
        "config": {
            "d": args.d,
            "pool": args.pool,
            "groups": args.groups,
            "group_size": args.group_size,
            "clients": args.clients,
            "requests_per_client": args.requests,
            "store": "memory",
            "body_dtype": "float32",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m_before": load_before,  # other work on the machine skews figures
            "load_average_1m_after": os.getloadavg()[0],
        },
        "publish_seconds": publish,
        "throughput": throughput,
        "overhead": overhead,
    }


def _table(result: dict[str, Any]) -> str:
    t, o = result["throughput"], result["overhead"]
    lines = [
        f"service benchmark: d={result['config']['d']} pool={result['config']['pool']} "
        f"{result['config']['groups']}x{result['config']['group_size']} per request "
        f"(load average {result['machine']['load_average_1m_before']:.1f} before)",
        f"  pool publish (engine build)      {result['publish_seconds']:9.2f} s",
        f"  throughput ({result['config']['clients']} clients, npy)     "
        f"{t['samples_per_second']:9.1f} samples/s  (p50 {t['latency_p50_seconds']:.2f} s)",
        "  per request          latency   compute  overhead  server-side  overhead/compute",
    ]
    for wire in ("npy", "json"):
        w = o[wire]
        lines.append(
            f"  {wire:<18} {w['latency_seconds']:9.3f} {w['compute_seconds']:9.3f} "
            f"{w['overhead_seconds']:9.4f} {w['server_overhead_seconds']:11.4f} "
            f"{100 * w['overhead_fraction_of_compute']:14.1f}%"
        )
    lines.append(f"  JSON overhead / npy overhead: {o['json_over_npy_overhead']:.1f}x")
    return "\n".join(lines)


def workload_arguments(parser: argparse.ArgumentParser) -> None:
    """The reference and request sizes both service benchmarks take (README's figures)."""
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--pool", type=int, default=50_000)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    workload_arguments(parser)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3, help="per client")
    parser.add_argument("--repeats", type=int, default=3, help="overhead requests per format")
    parser.add_argument("--chunk-rows", type=int, default=4096)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.d, args.pool, args.requests, args.repeats = 64, 2000, 2, 2
    result = asyncio.run(run(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(result))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
