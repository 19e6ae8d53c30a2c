"""Credits with a rolling pool against the same credits on a frozen pool, in one run.

The workload of a trainer fleet calling ``credit_reward_fn``: one redis-server and ``--processes``
service processes on it, a reference of width ``--d`` with a pool of ``--pool`` rows (target
fitted to generated features), and ``--trainers`` trainers, each with its own token and HTTP
client (httpx's defaults, as ``RewardClient``'s), posting ``--samples`` fresh samples to
``POST /v1/references/{name}/credits`` in a loop, its calls going round-robin over the
processes as behind a load balancer. Phases, each ``--warmup`` seconds then ``--duration``
seconds measured:

- frozen: no ``commit_fraction``, the pool does not move;
- rolling: ``commit_fraction`` ``--commit-fraction`` (``credit_reward_fn``'s default) with an
  ``Idempotency-Key`` per call, ``{run}-r{rank}-{call}`` as ``credit_reward_fn`` makes them.

``--orders 2`` runs frozen, rolling, rolling, frozen: the drift of a busy machine then weighs on
both. Reported per phase: samples/s, request p50/p95/p99 (requests sent after the warm-up),
errors and client timeouts (over the whole phase; a timed-out call is counted and the trainer
goes on to its next call, as nothing retries it), commits acknowledged, the lag the answers say
they were served with (``lag_rows``, ``lag_versions``, where answers carry them), the pool
turnover they report (``rows_per_call``, ``turnover_calls``), answers served at a version older
than the trainer's own last acknowledged commit, and rebuilds per process. Then rolling/frozen
ratios of throughput and p95, beside the targets (at least 0.7x, at most 3x, no errors or
timeouts): a missed target is a figure, not a failure.

Checked after each rolling phase (the exit status), once the processes have served every call
of the phase, those their clients gave up on included: every acknowledged commit applied once
(``benchmarks/commit_accounting.py``), every process at the stored version and base FD, and
the stored statistics equal to a recompute from the stored pool (1e-9 relative,
``benchmarks/stored_check.py``).

Writes ``benchmarks/results/rolling.json`` (``--output``) and prints a table. Every size is an
argument; the test suite runs a small one (``tests/hardening/test_hardening_rolling.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.cluster import (
    CLIENT_TOKENS,
    NPY_HEADERS,
    LocalCluster,
    admin_client,
    bearer,
    default_threads,
    finish,
    local_cluster,
    machine,
    metric,
    npy,
    percentile,
    rebuild_count,
    upload_reference,
    warm,
)
from benchmarks.commit_accounting import KeyedCall, recorded_versions, row_digests, verify_commits
from benchmarks.engine_bound import engine_bound
from benchmarks.stored_check import TOLERANCE, read_stored_state
from reward_client.reward_fn import COMMIT_FRACTION
from reward_service.store.redis import RedisStore

RESULTS = Path(__file__).resolve().parent / "results" / "rolling.json"
NAME = "rolling"
FROZEN, ROLLING = "frozen", "rolling"
# The issue's targets for rolling against frozen, reported beside the measured ratios.
TARGETS = {"throughput_ratio_at_least": 0.7, "p95_ratio_at_most": 3.0}
LAG_FIELDS = ("lag_rows", "lag_versions")
TURNOVER_FIELDS = ("rows_per_call", "turnover_calls")
SETUP_TIMEOUT = 600.0  # seconds, for the uploads and the reads between phases
IN_FLIGHT = "distreward_in_flight_requests"  # the /metrics gauge of requests being served


@dataclass
class Phase:
    """What the trainers saw in one phase."""

    mode: str
    index: int  # in the run: frozen, rolling, then with --orders 2 rolling, frozen
    measure_from: float  # time.monotonic(): requests sent from then on are measured
    deadline: float  # no request is sent after it
    start_version: int
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    latencies: list[float] = field(default_factory=list)
    samples: int = 0
    last_answer: float = 0.0  # time.monotonic() of the last measured answer
    errors: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    acknowledged: int = 0
    behind_own_commit: int = 0
    served: dict[str, list[float]] = field(
        default_factory=lambda: {name: [] for name in LAG_FIELDS + TURNOVER_FIELDS}
    )
    calls: list[KeyedCall] = field(default_factory=list)

    def record(self, seconds: float, samples: int, body: dict[str, Any]) -> None:
        self.latencies.append(seconds)
        self.samples += samples
        self.last_answer = time.monotonic()
        freshness = body.get("freshness") or {}
        lag = body.get("lag") or {}
        reported = {
            "lag_rows": lag.get("rows"),
            "lag_versions": lag.get("versions"),
            **{name: freshness.get(name) for name in TURNOVER_FIELDS},
        }
        for name, values in self.served.items():
            value = reported.get(name)
            if isinstance(value, int | float):
                values.append(float(value))

    @property
    def wall(self) -> float:
        return max(self.deadline, self.last_answer) - self.measure_from


async def _trainer(
    client: httpx.AsyncClient, urls: list[str], rank: int, phase: Phase, args: argparse.Namespace
) -> None:
    rng = np.random.default_rng([phase.index, rank])  # rows of no other phase
    own_version = -1  # the version of this trainer's last acknowledged commit
    call = 0
    while time.monotonic() < phase.deadline:
        samples = rng.normal(0.05, 1.0, size=(args.samples, args.d)).astype(np.float32)
        headers = dict(NPY_HEADERS)
        # Read your writes, as RewardClient sends it: the answer holds this trainer's commit.
        params: dict[str, float] = {} if own_version < 0 else {"after": own_version}
        keyed = None
        if phase.mode == ROLLING:
            keyed = KeyedCall(f"{phase.run_id}-r{rank}-{call}", row_digests(samples))
            phase.calls.append(keyed)
            headers["Idempotency-Key"] = keyed.key
            params["commit_fraction"] = args.commit_fraction
        url = urls[(rank + call) % len(urls)]
        call += 1
        measured = time.monotonic() >= phase.measure_from
        began = time.perf_counter()
        try:
            answer = await client.post(
                f"{url}/v1/references/{NAME}/credits",
                content=npy(samples),
                headers=headers,
                params=params,
            )
        except httpx.TimeoutException:
            phase.timeouts += 1
            continue
        except httpx.TransportError as exc:
            phase.errors[type(exc).__name__] += 1
            continue
        seconds = time.perf_counter() - began
        if answer.status_code != 200:
            phase.errors[str(answer.status_code)] += 1
            continue
        body = answer.json()
        phase.behind_own_commit += body["version"] < own_version
        if keyed is not None:
            committed = body.get("committed")
            if committed is None:  # every share here draws rows (parse_args)
                phase.errors["answer without its commit"] += 1
                continue
            keyed.version = own_version = int(committed["version"])
            keyed.committed_rows = int(committed["rows"])
            phase.acknowledged += 1
        if measured:
            phase.record(seconds, args.samples, body)


async def _stored_version(redis_url: str) -> int:
    store = RedisStore.from_url(redis_url)
    try:
        meta = await store.read_meta(NAME)
    finally:
        await store.close()
    if meta is None:
        raise RuntimeError(f"reference {NAME!r} is not in Redis")
    return int(meta.version)


async def _settled_info(
    client: httpx.AsyncClient, url: str, version: int, timeout: float
) -> dict[str, Any]:
    """The process's reference info once it serves ``version`` (or after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        info: dict[str, Any] = (await client.get(f"{url}/v1/references/{NAME}")).json()
        if info["version"] == version or time.monotonic() > deadline:
            return info
        await asyncio.sleep(0.2)


async def _quiesce(client: httpx.AsyncClient, cluster: LocalCluster, timeout: float) -> bool:
    """Whether the processes went quiet within ``timeout`` seconds: a call its client gave up
    on may still be served, and commit, after the phase. Quiet: three reads half a second apart
    find the same stored version and no request in flight but the one reading the metrics."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while time.monotonic() < deadline:
        busy = [await metric(client, url, IN_FLIGHT) for url in cluster.urls]
        if all(count is not None and count <= 1 for count in busy):
            seen.append(await _stored_version(cluster.redis_url))
            if len(seen) >= 3 and len(set(seen[-3:])) == 1:
                return True
        else:
            seen.clear()
        await asyncio.sleep(0.5)
    return False


async def _verify(
    client: httpx.AsyncClient, cluster: LocalCluster, phase: Phase, args: argparse.Namespace
) -> dict[str, Any]:
    """The checks after a rolling phase, and what they looked at."""
    quiet = await _quiesce(client, cluster, args.settle_timeout)
    stored = await read_stored_state(cluster.redis_url, NAME)
    store = RedisStore.from_url(cluster.redis_url)
    try:
        log = await store.read_log(NAME, "0-0")
    finally:
        await store.close()
    checks = {"processes_quiet_before_checks": quiet}
    accounted, figures = verify_commits(
        phase.calls,
        await recorded_versions(cluster.redis_url, f"{phase.run_id}-r"),
        start_version=phase.start_version,
        stored_version=stored.version,
        log=log,
        pool=stored.pool,
        most_rows_per_commit=math.ceil(args.samples * args.commit_fraction),
    )
    checks.update(accounted)
    infos = [
        await _settled_info(client, url, stored.version, args.settle_timeout)
        for url in cluster.urls
    ]
    checks["processes_at_stored_version"] = all(
        info["version"] == stored.version
        and abs(info["base_fd"] - stored.base_fd) <= TOLERANCE * abs(stored.base_fd)
        for info in infos
    )
    checks["stored_statistics_match_recompute"] = stored.consistent
    checks["commits_acknowledged"] = phase.acknowledged > 0  # else the checks above are empty
    return {
        "checks": checks,
        "commits": figures,
        "stored": stored.summary(),
        "process_versions": [info["version"] for info in infos],
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    """p50, p95 and max of what the answers said (None: no answer carried it)."""
    if not values:
        return None
    return {
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": max(values),
    }


def _phase_result(phase: Phase) -> dict[str, Any]:
    served = phase.served
    return {
        "mode": phase.mode,
        "order": phase.index // 2,
        "wall_seconds": phase.wall,
        "requests": len(phase.latencies),
        "samples_per_second": phase.samples / phase.wall,
        "latency_seconds": {f"p{q}": percentile(phase.latencies, q) for q in (50, 95, 99)},
        "load_average_1m_after": os.getloadavg()[0],  # the machine is shared: how busy it was
        "errors": dict(phase.errors),
        "timeouts": phase.timeouts,
        "commits_acknowledged": phase.acknowledged,
        "answers_behind_own_commit": phase.behind_own_commit,
        "served_lag": {name: _spread(served[name]) for name in LAG_FIELDS},
        "turnover": {
            name: statistics.median(served[name]) if served[name] else None
            for name in TURNOVER_FIELDS
        },
    }


async def _phase(
    index: int,
    mode: str,
    cluster: LocalCluster,
    trainers: list[httpx.AsyncClient],
    reads: httpx.AsyncClient,
    args: argparse.Namespace,
) -> tuple[Phase, dict[str, Any]]:
    built = [await rebuild_count(reads, url, NAME) for url in cluster.urls]
    start, cpu = time.monotonic(), time.process_time()
    phase = Phase(
        mode,
        index,
        measure_from=start + args.warmup,
        deadline=start + args.warmup + args.duration,
        start_version=await _stored_version(cluster.redis_url),
    )
    await asyncio.gather(
        *(_trainer(client, cluster.urls, rank, phase, args) for rank, client in enumerate(trainers))
    )
    result = _phase_result(phase)
    # The trainers share one process on the service's machine: a share near 1 would mean that
    # they, not the service, set the pace (small d, fast answers).
    result["client_cpu_share"] = (time.process_time() - cpu) / (time.monotonic() - start)
    after = [await rebuild_count(reads, url, NAME) for url in cluster.urls]
    result["rebuilds_per_process"] = [
        None if b is None or a is None else a - b for b, a in zip(built, after, strict=True)
    ]
    if mode == ROLLING:
        result.update(await _verify(reads, cluster, phase, args))
    return phase, result


async def _run(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    async with (
        admin_client(SETUP_TIMEOUT) as admin,
        httpx.AsyncClient(headers=bearer(0), timeout=SETUP_TIMEOUT) as reads,
        AsyncExitStack() as stack,
    ):
        # A client per trainer, with its token, kept over the phases: a trainer process's.
        trainers = [
            await stack.enter_async_context(
                httpx.AsyncClient(headers=bearer(rank), timeout=args.timeout)
            )
            for rank in range(args.trainers)
        ]
        began = time.perf_counter()
        await upload_reference(
            admin, cluster.urls[0], NAME, d=args.d, pool=args.pool, chunk_rows=args.chunk_rows
        )
        await warm(reads, cluster.urls, NAME)
        setup_seconds = time.perf_counter() - began
        # One order: frozen then rolling; two: and then rolling then frozen.
        modes = [FROZEN, ROLLING, ROLLING, FROZEN][: 2 * args.orders]
        phases = [
            await _phase(i, mode, cluster, trainers, reads, args) for i, mode in enumerate(modes)
        ]
    return _report(phases, setup_seconds, args)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def _ratios(phases: list[Phase]) -> dict[str, float | None]:
    """Rolling over frozen, the phases of each mode pooled: throughput (their samples over their
    wall time) and p95 (of their latencies together)."""

    def pooled(mode: str) -> tuple[float | None, float | None]:
        chosen = [phase for phase in phases if phase.mode == mode]
        wall = sum(phase.wall for phase in chosen)
        latencies = [seconds for phase in chosen for seconds in phase.latencies]
        throughput = sum(phase.samples for phase in chosen) / wall if wall else None
        return throughput, percentile(latencies, 95)

    (rolling_rate, rolling_p95), (frozen_rate, frozen_p95) = pooled(ROLLING), pooled(FROZEN)
    return {"throughput": _ratio(rolling_rate, frozen_rate), "p95": _ratio(rolling_p95, frozen_p95)}


def _report(
    phases: list[tuple[Phase, dict[str, Any]]], setup_seconds: float, args: argparse.Namespace
) -> dict[str, Any]:
    runs = [phase for phase, _ in phases]
    results = [result for _, result in phases]
    ratios: dict[str, Any] = _ratios(runs)
    ratios["per_order"] = [
        _ratios([phase for phase in runs if phase.index // 2 == order])
        for order in range(args.orders)
    ]
    failures = sum(phase.timeouts + phase.errors.total() for phase in runs)
    throughput, p95 = ratios["throughput"], ratios["p95"]
    targets = {
        **TARGETS,
        "throughput_met": throughput is not None
        and throughput >= TARGETS["throughput_ratio_at_least"],
        "p95_met": p95 is not None and p95 <= TARGETS["p95_ratio_at_most"],
        "no_errors_or_timeouts": failures == 0,
    }
    verified = [result["checks"] for result in results if "checks" in result]
    checks = {name: all(each[name] for each in verified) for name in verified[0]}
    return {
        "config": {
            "d": args.d,
            "pool": args.pool,
            "trainers": args.trainers,
            "samples_per_call": args.samples,
            "commit_fraction": args.commit_fraction,
            "service_processes": args.processes,
            "torch_threads_per_process": args.threads,
            "routing": "each trainer's calls round-robin over the processes",
            "warmup_seconds": args.warmup,
            "duration_seconds": args.duration,
            "orders": args.orders,
            "client_timeout_seconds": args.timeout,
            "store": "redis",
            "body_dtype": "float32",
        },
        "machine": machine(),
        "setup_seconds": setup_seconds,
        "phases": results,
        "ratios": ratios,
        "targets": targets,
        "checks": checks,
        "passed": all(checks.values()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The engine's own bound first (nothing else running), then: start Redis and the service
    processes, run the phases, stop everything."""
    bound = None
    if args.engine_seconds > 0:
        bound = engine_bound(
            d=args.d,
            pool=args.pool,
            samples=args.samples,
            commit_fraction=args.commit_fraction,
            threads=args.threads,
            seconds=args.engine_seconds,
        )
    with local_cluster(
        processes=args.processes,
        clients=args.trainers,
        threads=args.threads,
        log_dir=args.log_dir,
    ) as cluster:
        result = asyncio.run(_run(cluster, args))
    result["engine_bound"] = bound
    return result


def _figure(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec`` (width first), or "-" as wide when there is none."""
    width = spec.split(".")[0]
    return format("-", f">{width}") if value is None else format(value, spec)


def _table(result: dict[str, Any]) -> str:
    c = result["config"]
    lines = [
        f"bench_rolling: d={c['d']} pool={c['pool']:,}; {c['trainers']} trainers x "
        f"{c['samples_per_call']} samples a call over {c['service_processes']} processes; "
        f"commit_fraction {c['commit_fraction']}; {c['warmup_seconds']:g} s warm-up + "
        f"{c['duration_seconds']:g} s a phase (setup {result['setup_seconds']:.1f} s)",
        f"  {'phase':<10} {'samples/s':>9} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'errors':>6} "
        f"{'timeouts':>8} {'commits':>7} {'behind':>6} {'lag rows':>8} {'lag vers':>8} "
        f"{'turnover':>8} {'client':>6}  rebuilds",
    ]
    for phase in result["phases"]:
        latency, lag = phase["latency_seconds"], phase["served_lag"]
        lag_rows, lag_versions = lag["lag_rows"], lag["lag_versions"]
        lines.append(
            f"  {phase['mode'] + ' ' + str(phase['order'] + 1):<10} "
            f"{phase['samples_per_second']:>9.1f} {_figure(latency['p50'], '7.3f')} "
            f"{_figure(latency['p95'], '7.3f')} {_figure(latency['p99'], '7.3f')} "
            f"{sum(phase['errors'].values()):>6} {phase['timeouts']:>8} "
            f"{phase['commits_acknowledged']:>7} {phase['answers_behind_own_commit']:>6} "
            f"{_figure(lag_rows and lag_rows['p95'], '8.0f')} "
            f"{_figure(lag_versions and lag_versions['p95'], '8.0f')} "
            f"{_figure(phase['turnover']['turnover_calls'], '8.0f')} "
            f"{phase['client_cpu_share']:>6.0%}  "
            f"{phase['rebuilds_per_process']}"
        )
    ratios, targets = result["ratios"], result["targets"]
    met = {True: "met", False: "missed"}
    lines += [
        "  (p95 columns: lag rows / versions the answers report, '-' where they carry none; "
        "behind: answers older than the trainer's own last commit; turnover: median calls; "
        "client: the trainers' process's CPU over the phase's time)",
        f"  rolling/frozen: throughput {_figure(ratios['throughput'], '.3f')}x (target >= "
        f"{targets['throughput_ratio_at_least']}x: {met[targets['throughput_met']]}), p95 "
        f"{_figure(ratios['p95'], '.2f')}x (target <= {targets['p95_ratio_at_most']}x: "
        f"{met[targets['p95_met']]}); errors and timeouts: "
        f"{met[targets['no_errors_or_timeouts']]}",
    ]
    if len(ratios["per_order"]) > 1:
        lines.append(
            "  per order: "
            + "; ".join(
                f"throughput {_figure(o['throughput'], '.3f')}x, p95 {_figure(o['p95'], '.2f')}x"
                for o in ratios["per_order"]
            )
        )
    bound = result.get("engine_bound")
    if bound is not None:
        call = bound["rolling_call_seconds"]
        lines.append(
            f"  engine alone ({bound['threads']} thread(s), builds in line): rolling/frozen "
            f"{bound['throughput_ratio']:.3f}x; a frozen call "
            f"{1e3 * bound['frozen_call_seconds']:.0f} ms, a rolling call "
            f"{1e3 * call['credits']:.0f} ms credits + "
            f"{1e3 * call['commit']:.0f} ms commit + {1e3 * call['build']:.0f} ms builds "
            f"({bound['builds']} builds, one per {_figure(bound['rows_per_build'], '.0f')} rows)"
        )
    lines.append(
        f"  {'PASSED' if result['passed'] else 'FAILED'}: "
        + ", ".join(f"{name}={ok}" for name, ok in result["checks"].items())
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--pool", type=int, default=50_000)
    parser.add_argument("--trainers", type=int, default=8)
    parser.add_argument("--samples", type=int, default=64, help="per credits call")
    parser.add_argument("--commit-fraction", type=float, default=COMMIT_FRACTION)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (default: the cores shared out among the processes)",
    )
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before each phase")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured a phase")
    parser.add_argument(
        "--orders",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: frozen, rolling; 2: frozen, rolling, rolling, frozen",
    )
    parser.add_argument("--chunk-rows", type=int, default=4096, help="pool upload chunks")
    parser.add_argument(
        "--engine-seconds",
        type=float,
        default=20.0,
        help="seconds of each mode on the engine alone, before the cluster starts (0: skip)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="per trainer request, seconds (the client's default)",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=60.0,
        help="seconds the processes may take, after a rolling phase, to finish the calls "
        "their clients gave up on, then to reach the stored version",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep the service processes' logs there"
    )
    args = parser.parse_args(argv)
    if args.trainers > len(CLIENT_TOKENS):
        parser.error(f"at most {len(CLIENT_TOKENS)} trainers")
    if not 0 < args.commit_fraction <= 1 or math.floor(args.samples * args.commit_fraction) < 1:
        # Every rolling call then commits a row at least, so each version is one call's.
        parser.error("--commit-fraction times --samples must be at least 1 (and the share <= 1)")
    if math.ceil(args.samples * args.commit_fraction) > args.pool:
        parser.error("a call's commit share must fit the pool")
    if args.threads is None:
        args.threads = default_threads(args.processes)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return finish(run(args), args.output, _table)


if __name__ == "__main__":
    raise SystemExit(main())
