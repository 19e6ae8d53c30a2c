"""Load test: two service processes on one Redis, trainers asking for rewards while others commit.

``make load`` runs the full size: 8 trainer clients sending binary reward requests (16 groups of
64, d = 2048) against a pool of 50,000 rows while 12 clients commit 2 rows every 0.5 s (each
client with its own token), for 60 s or until a request cap. Reported: requests/s, samples/s,
latency percentiles, errors, commits; afterwards the state in Redis is replayed the way a fresh
replica loads it and checked against a from-scratch recompute from the stored pool (1e-9
relative), and both processes must serve that version.
Every size is a command-line argument; the test suite runs a small one. Commits are reported
too: answer latency, sustained commits per second on the reference (checked against
``--min-commit-rate``), and how many version precomputes each process built (coalesced, so far
fewer than the commits; checked against ``--max-rebuild-share``).

Writes ``benchmarks/results/load.json`` (``--output``) and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.bench_service import workload_arguments
from benchmarks.cluster import (
    CLIENT_TOKENS,
    NPY_HEADERS,
    admin_client,
    bearer,
    default_threads,
    finish,
    local_cluster,
    machine,
    npy,
    percentile,
    rebuild_count,
    upload_reference,
    warm,
)
from benchmarks.stored_check import read_stored_state

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
NAME = "load"


@dataclass
class Tally:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    acked_versions: list[int] = field(default_factory=list)
    commit_latencies: list[float] = field(default_factory=list)
    stale_answers: int = 0
    last_commit_answer: float = 0.0  # perf_counter of the last acknowledgement


async def _trainer(
    client: httpx.AsyncClient,
    url: str,
    worker: int,
    args: argparse.Namespace,
    deadline: float,
    budget: list[int],
    tally: Tally,
) -> None:
    groups = (
        np.random.default_rng(100 + worker)
        .normal(0.05, 1.0, size=(args.groups, args.group_size, args.d))
        .astype(np.float32)
    )
    body = npy(groups)
    step = 0
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        began = time.perf_counter()
        try:
            answer = await client.post(
                f"{url}/v1/references/{NAME}/rewards",
                content=body,
                headers={**NPY_HEADERS, **bearer(worker)},
                params={"seed": worker * 1_000_000 + step},
            )
        except httpx.TransportError as exc:
            tally.errors[type(exc).__name__] += 1
            continue
        finally:
            step += 1
        if answer.status_code != 200:
            tally.errors[str(answer.status_code)] += 1
            continue
        tally.latencies.append(time.perf_counter() - began)
        tally.stale_answers += bool(answer.json()["stale"])


async def _committer(
    client: httpx.AsyncClient,
    url: str,
    worker: int,
    args: argparse.Namespace,
    deadline: float,
    tally: Tally,
) -> None:
    rng = np.random.default_rng(200 + worker)
    step = 0
    while time.monotonic() < deadline:
        rows = rng.normal(0.05, 1.0, size=(args.commit_rows, args.d)).astype(np.float32)
        began = time.perf_counter()
        try:
            answer = await client.post(
                f"{url}/v1/references/{NAME}/commit",
                content=npy(rows),
                headers={
                    **NPY_HEADERS,
                    **bearer(args.trainers + worker),
                    "Idempotency-Key": f"load-{worker}-{step}",
                },
            )
        except httpx.TransportError as exc:
            tally.errors[f"commit {type(exc).__name__}"] += 1
        else:
            if answer.status_code == 200:
                tally.acked_versions.append(int(answer.json()["version"]))
                tally.commit_latencies.append(time.perf_counter() - began)
                tally.last_commit_answer = time.perf_counter()
            else:
                tally.errors[f"commit {answer.status_code}"] += 1
        step += 1
        await asyncio.sleep(args.commit_interval)


async def _run(urls: list[str], redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    trainer_headers = bearer(0)  # reads: the first trainer's token
    limits = httpx.Limits(max_connections=64)
    async with (
        admin_client(args.timeout) as admin,
        httpx.AsyncClient(headers=trainer_headers, timeout=args.timeout, limits=limits) as client,
    ):
        began = time.perf_counter()
        start_version = await upload_reference(
            admin, urls[0], NAME, d=args.d, pool=args.pool, chunk_rows=args.chunk_rows
        )
        await warm(client, urls, NAME)
        setup_seconds = time.perf_counter() - began

        tally = Tally()
        budget = [args.max_requests]
        began = time.perf_counter()
        deadline = time.monotonic() + args.duration
        await asyncio.gather(
            *(
                _trainer(client, urls[w % len(urls)], w, args, deadline, budget, tally)
                for w in range(args.trainers)
            ),
            *(
                _committer(client, urls[w % len(urls)], w, args, deadline, tally)
                for w in range(args.committers)
            ),
        )
        wall = time.perf_counter() - began
        # Commits stop at the deadline; reward requests in flight then may take long to drain,
        # so the commit rate is over the time commits were sent and answered.
        committing = max(tally.last_commit_answer - began, args.duration)
        stored = await read_stored_state(redis_url, NAME)
        served = [(await client.get(f"{url}/v1/references/{NAME}")).json() for url in urls]
        rebuilds = [await rebuild_count(client, url, NAME) for url in urls]

    requests = len(tally.latencies)
    applied = stored.version - start_version
    checks = {
        "stored_statistics_match_recompute": stored.consistent,
        "acknowledged_commits_all_applied_once": (
            sorted(tally.acked_versions) == list(range(start_version + 1, stored.version + 1))
        ),
        "replicas_at_stored_version": all(info["version"] == stored.version for info in served),
        "replicas_base_fd_match": all(
            abs(info["base_fd"] - stored.base_fd) <= 1e-9 * abs(stored.base_fd) for info in served
        ),
        "zero_errors": not tally.errors,
        "commit_rate_sustained": applied / committing >= args.min_commit_rate,
        # How far below the commits depends on rebuild time: a process whose rebuild is faster
        # than the commit interval builds once per commit.
        "rebuilds_well_below_commits": all(
            count is not None and count <= args.max_rebuild_share * applied for count in rebuilds
        ),
    }
    return {
        "config": {
            "d": args.d,
            "pool": args.pool,
            "groups": args.groups,
            "group_size": args.group_size,
            "trainers": args.trainers,
            "committers": args.committers,
            "commit_rows": args.commit_rows,
            "commit_interval_seconds": args.commit_interval,
            "duration_seconds": args.duration,
            "max_requests": args.max_requests,
            "service_processes": len(urls),
            "torch_threads_per_process": args.threads,
            "min_commit_rate": args.min_commit_rate,
            "max_rebuild_share": args.max_rebuild_share,
            "store": "redis",
            "body_dtype": "float32",
        },
        "machine": machine(),
        "setup_seconds": setup_seconds,
        "wall_seconds": wall,
        "requests": requests,
        "requests_per_second": requests / wall,
        "samples_per_second": requests * args.groups * args.group_size / wall,
        "latency_seconds": {f"p{q}": percentile(tally.latencies, q) for q in (50, 95, 99)},
        "stale_answers": tally.stale_answers,
        "errors": dict(tally.errors),
        "commits": {
            "acknowledged": len(tally.acked_versions),
            "applied": applied,
            "per_second": applied / committing,
            "committing_seconds": committing,
            "latency_p50_seconds": percentile(tally.commit_latencies, 50),
            "latency_p99_seconds": percentile(tally.commit_latencies, 99),
            "rebuilds_per_process": rebuilds,
        },
        "stored": stored.summary(),
        "replica_versions": [info["version"] for info in served],
        "checks": checks,
        "passed": all(checks.values()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start Redis and the service processes, load them, stop everything."""
    with local_cluster(
        processes=args.processes,
        clients=args.trainers + args.committers,
        threads=args.threads,
        settings={"DISTREWARD_MAX_GROUP_SIZE": str(max(args.group_size, 64))},
    ) as cluster:
        return asyncio.run(_run(cluster.urls, cluster.redis_url, args))


def _summary(result: dict[str, Any]) -> str:
    c, lat = result["config"], result["latency_seconds"]
    fmt = "{:.3f}".format
    return "\n".join(
        [
            f"load: d={c['d']} pool={c['pool']} {c['groups']}x{c['group_size']} per request, "
            f"{c['trainers']} trainers + {c['committers']} committers on {c['service_processes']} "
            f"processes, {result['wall_seconds']:.1f} s (setup {result['setup_seconds']:.1f} s)",
            f"  requests {result['requests']}  ({result['requests_per_second']:.2f}/s, "
            f"{result['samples_per_second']:.0f} samples/s)",
            f"  latency p50 {fmt(lat['p50'] or 0)} s  p95 {fmt(lat['p95'] or 0)} s  "
            f"p99 {fmt(lat['p99'] or 0)} s",
            f"  commits acknowledged {result['commits']['acknowledged']}, applied "
            f"{result['commits']['applied']} ({result['commits']['per_second']:.1f}/s), answer p50 "
            f"{fmt(result['commits']['latency_p50_seconds'] or 0)} s p99 "
            f"{fmt(result['commits']['latency_p99_seconds'] or 0)} s; rebuilds per process "
            f"{result['commits']['rebuilds_per_process']}; errors {result['errors'] or 0}",
            f"  stored statistics vs recompute: {result['stored']['statistics_relative_error']:.1e}"
            f" (FD {result['stored']['fd_relative_error']:.1e}); replicas at "
            f"{result['replica_versions']}",
            f"  {'PASSED' if result['passed'] else 'FAILED'}: "
            + ", ".join(f"{name}={ok}" for name, ok in result["checks"].items()),
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    workload_arguments(parser)
    parser.add_argument("--trainers", type=int, default=8)
    parser.add_argument("--committers", type=int, default=12)
    parser.add_argument("--commit-rows", type=int, default=2)
    parser.add_argument("--commit-interval", type=float, default=0.5, help="seconds, per client")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (default: the cores shared out among the processes)",
    )
    parser.add_argument(
        "--min-commit-rate",
        type=float,
        default=10.0,
        help="commits per second the run must sustain",
    )
    parser.add_argument(
        "--max-rebuild-share",
        type=float,
        default=0.25,
        help="most rebuilds per process, as a share of the commits applied",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--max-requests", type=int, default=5000, help="reward requests, in all")
    parser.add_argument("--chunk-rows", type=int, default=4096)
    parser.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.trainers + args.committers > len(CLIENT_TOKENS):
        parser.error(f"at most {len(CLIENT_TOKENS)} trainers and committers together")
    if args.threads is None:
        args.threads = default_threads(args.processes)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return finish(run(args), args.output, _summary)


if __name__ == "__main__":
    raise SystemExit(main())
