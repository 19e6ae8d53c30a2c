"""The cluster, running: ``docker compose up`` of compose.yaml (+ the CPU override and the test's
image override) on podman, and what a user would look at.

Scenarios, in order (each builds on the cluster the previous ones left):

1. up: ``/readyz`` through the load balancer, requests land on both replicas, the reference init
   job uploaded the reference once;
2. a replica is killed while the trainer runs: every trainer step succeeds, the load balancer
   keeps answering, the trainer finishes its shortened run with a commit per step, and
   ``--scale reward-service=3`` adds a replica that catches up to the same version and base FD;
3. Prometheus finds every replica through DNS and scrapes it, and every query of the Grafana
   dashboard returns data;
4. Redis is restarted, then the whole cluster goes ``down`` and ``up`` again: every acknowledged
   commit is still there (version, base FD, statistics equal to a recompute), none applied twice;
5. credits of 64 samples a call from several trainer tokens through the load balancer, as
   ``credit_reward_fn`` sends them, on a frozen pool and then rolling it (a quarter of each call
   committed with an idempotency key), the same time each: no errors, every answer holds its
   trainer's own commits, every acknowledged commit is in Redis once, and the replicas agree.
   Samples/s of both and their ratio are measured figures (benchmarks judge speed, not this).

Measured figures go to ``out/cluster-live.json``. Needs root and the images of
``scripts/cluster_setup.sh`` (``make test`` runs it first).
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
from cluster_support import ROOT, dashboard_queries, finite_values, wait_for
from live_cluster import REFERENCE, LiveCluster

from benchmarks.cluster import NPY_HEADERS, npy, percentile
from benchmarks.commit_accounting import KeyedCall, row_digests

# Measured figures, and each service's log, the env file and podman's API log of the last run.
MEASURED = ROOT / "out" / "cluster-live.json"
RUN_FOLDER = ROOT / "out" / "cluster-live"
TRAIN_STEPS = 30  # the trainer's shortened run (compose's default is 200)
TRAIN_TIMEOUT = 900.0  # s for the trainer to finish
READY_TIMEOUT = 300.0  # s for a (re)started replica or the load balancer to be ready
SCRAPE_TIMEOUT = 120.0  # s for Prometheus to discover, scrape and have rates for a panel
KILL_REQUESTS = 30  # requests sent through the load balancer while a replica is dead
COMMITS = 5  # acknowledged commits the test makes itself before the restarts
CREDIT_SAMPLES = 64  # samples per credits call
COMMIT_FRACTION = 0.25  # of each rolling call: credit_reward_fn's default
CREDITS_WARMUP = 2.0  # s of each credits phase before its calls are measured
CREDITS_SECONDS = 5.0  # s measured of each credits phase

T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LiveCluster]:
    live = LiveCluster(RUN_FOLDER, train_steps=TRAIN_STEPS)
    try:
        live.open()
        live.measured["up_seconds"] = round(live.up(), 1)
        yield live
    finally:
        if live.locked:  # else another session's cluster and figures: left alone
            MEASURED.parent.mkdir(parents=True, exist_ok=True)
            MEASURED.write_text(json.dumps(live.measured, indent=2) + "\n")
        live.close()


def slowly(check: Callable[[], T], pause: float = 2.0) -> Callable[[], T]:
    """``check`` for :func:`wait_for`, polled every ``pause`` seconds (it runs commands)."""

    def paused() -> T:
        time.sleep(pause)
        return check()

    return paused


def ready(url: str) -> bool:
    try:
        answer = httpx.get(f"{url}/readyz", timeout=5.0)
    except httpx.TransportError:
        return False
    return answer.status_code == 200 and answer.json()["status"] == "ready"


def trainer_records(cluster: LiveCluster) -> list[dict[str, Any]]:
    """The trainer's step records, as ``docker compose logs trainer`` shows them."""
    lines = (line.strip() for line in cluster.logs("trainer").splitlines())
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [r for r in records if r.get("kind") == "train"]


def test_load_balancer_is_ready_and_requests_land_on_both_replicas(cluster: LiveCluster) -> None:
    wait_for("/readyz through the load balancer", lambda: ready(cluster.lb), READY_TIMEOUT)
    replicas = cluster.running("reward-service")
    assert len(replicas) == 2, replicas
    assert all(ready(f"http://{r.ip}:8000") for r in replicas)
    d = cluster.info()["d"]
    before = [cluster.api_requests(r) for r in replicas]
    rng = np.random.default_rng(0)
    with cluster.client() as client:
        statuses = [cluster.rewards_request(client, d, rng) for _ in range(40)]
    after = [cluster.api_requests(r) for r in replicas]
    assert statuses == [200] * 40
    landed = [b - a for a, b in zip(before, after, strict=True)]
    cluster.measured["requests_per_replica_of_40"] = landed  # the trainer's run too
    assert all(n > 0 for n in landed), landed


def test_reference_init_uploaded_the_reference_once(cluster: LiveCluster) -> None:
    (job,) = cluster.containers("reference-init")
    assert (job.state, job.exit_code, job.restarts) == ("exited", 0, 0)
    assert cluster.logs("reference-init").count(f"reference {REFERENCE} uploaded") == 1
    info = cluster.info()
    assert info["n"] > 0 and info["base_fd"] > 0


def test_killed_replica_trainer_finishes_and_a_third_replica_catches_up(
    cluster: LiveCluster,
) -> None:
    (trainer,) = cluster.containers("trainer")
    wait_for("three trainer steps", lambda: len(trainer_records(cluster)) >= 3, TRAIN_TIMEOUT)
    assert len(trainer_records(cluster)) < TRAIN_STEPS, "the trainer finished before the kill"
    victim, survivor = cluster.running("reward-service")
    d = cluster.info()["d"]
    cluster.podman("kill", "--signal", "KILL", victim.name)
    served_before = cluster.api_requests(survivor)
    rng = np.random.default_rng(1)
    began = time.monotonic()
    with cluster.client() as client:
        statuses = [cluster.rewards_request(client, d, rng) for _ in range(KILL_REQUESTS)]
    seconds = time.monotonic() - began
    served = cluster.api_requests(survivor) - served_before
    (killed,) = [c for c in cluster.containers("reward-service") if c.name == victim.name]
    cluster.measured["requests_while_one_replica_dead"] = {
        "sent": KILL_REQUESTS,
        "ok": statuses.count(200),
        "seconds": round(seconds, 2),
        "answered_by_the_survivor_with_the_trainer_s": served,
        "killed_replica_afterwards": {"state": killed.state, "restarts": killed.restarts},
    }
    assert statuses == [200] * KILL_REQUESTS
    assert killed.state != "running"  # podman does not restart a killed container by itself
    assert served >= KILL_REQUESTS  # all of them, next to the trainer's own requests

    wait_for(
        "the trainer's exit",
        slowly(lambda: cluster.containers("trainer")[0].state == "exited"),
        TRAIN_TIMEOUT,
    )
    (trainer,) = cluster.containers("trainer")
    assert (trainer.exit_code, trainer.restarts) == (0, 0), cluster.logs("trainer")[-3000:]
    steps = [r["step"] for r in cluster.trainer_metrics()]
    assert steps == list(range(1, TRAIN_STEPS + 1))
    info = cluster.info()
    cluster.measured["version_after_training"] = info["version"]
    assert info["version"] >= TRAIN_STEPS  # one commit per step (commit_every = 1)

    old = {r.name for r in cluster.containers("reward-service")}
    began = time.monotonic()
    # --no-recreate: the running replica keeps serving (with `--no-deps` instead, compose
    # recreated every replica here, and the load balancer had none for a while).
    cluster.compose(
        "up",
        "--detach",
        "--no-build",
        "--no-recreate",
        "--scale",
        "reward-service=3",
        "reward-service",
    )
    new = wait_for(
        "a third replica",
        lambda: [r for r in cluster.running("reward-service") if r.name not in old],
        READY_TIMEOUT,
    )[0]
    target = cluster.info(f"http://{survivor.ip}:8000")  # the one that served to the end

    def caught_up() -> bool:
        if not ready(f"http://{new.ip}:8000"):
            return False
        mine = cluster.info(f"http://{new.ip}:8000")
        return bool(mine["version"] == target["version"])

    wait_for("the new replica at the cluster's version", caught_up, READY_TIMEOUT)
    cluster.measured["new_replica_catch_up_seconds"] = round(time.monotonic() - began, 1)
    mine = cluster.info(f"http://{new.ip}:8000")
    assert mine["base_fd"] == pytest.approx(target["base_fd"], rel=1e-9)

    # nginx re-resolves the service name: the new replica joins the rotation.
    rng = np.random.default_rng(2)

    def new_replica_served() -> bool:
        with cluster.client() as client:
            assert cluster.rewards_request(client, d, rng) == 200
        return cluster.api_requests(new) > 0

    wait_for("a request through the load balancer on the new replica", new_replica_served, 60.0)
    settled = cluster.settled(READY_TIMEOUT)
    running = cluster.running("reward-service")
    cluster.measured["replicas_running_after_scale"] = len(running)
    assert new.name in {r.name for r in running} and len(running) == 3
    assert settled["version"] == target["version"]


def _drive_load(cluster: LiveCluster, stop: threading.Event) -> None:
    """Rewards requests, a commit every tenth, and a few client errors (404, 400) through the
    load balancer, so that every panel's rate has something to show."""
    d = cluster.info()["d"]
    rng = np.random.default_rng(3)
    with cluster.client() as client:
        i = 0
        while not stop.is_set():
            cluster.rewards_request(client, d, rng)
            if i % 10 == 0:
                client.post(
                    f"/v1/references/{REFERENCE}/commit",
                    json={"features": rng.normal(size=(2, d)).tolist()},
                    headers={"Idempotency-Key": f"dashboard-load-{i}"},
                )
                client.get("/v1/references/no-such-reference")
                client.post(
                    f"/v1/references/{REFERENCE}/rewards",
                    json={"groups": rng.normal(size=(1, 2, d + 1)).tolist()},
                )
            i += 1
            stop.wait(0.2)


def test_prometheus_discovers_every_replica_and_every_panel_has_data(
    cluster: LiveCluster,
) -> None:
    wanted = {f"{r.ip}:8000" for r in cluster.running("reward-service")}

    def discovered() -> bool:
        up = cluster.query('up{job="reward-service"} == 1')
        return {s["metric"]["instance"] for s in up} == wanted

    wait_for("Prometheus scraping every replica found by DNS", discovered, SCRAPE_TIMEOUT)
    cluster.measured["replicas_up_in_prometheus"] = len(wanted)
    stop = threading.Event()
    load = threading.Thread(target=_drive_load, args=(cluster, stop), daemon=True)
    load.start()
    try:
        for panel in dashboard_queries("30s"):
            wait_for(
                f"data for panel {panel.panel!r} ({panel.ref}): {panel.expr}",
                slowly(lambda panel=panel: finite_values(cluster.query(panel.expr))),
                SCRAPE_TIMEOUT,
            )
    finally:
        stop.set()
        load.join(timeout=60)
    cluster.measured["dashboard_queries_with_data"] = len(dashboard_queries("30s"))


def _commit(cluster: LiveCluster, key: str, rows: np.ndarray) -> dict[str, Any]:
    with cluster.client() as client:
        answer = client.post(
            f"/v1/references/{REFERENCE}/commit",
            json={"features": rows.tolist()},
            headers={"Idempotency-Key": key},
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_redis_restart_and_cluster_down_up_keep_every_acknowledged_commit(
    cluster: LiveCluster,
) -> None:
    d = cluster.info()["d"]
    rng = np.random.default_rng(4)
    rows = {f"durable-{i}": rng.normal(size=(2, d)) for i in range(COMMITS + 1)}
    keys = list(rows)
    acks, latencies = {}, []
    for key in keys[:COMMITS]:
        began = time.monotonic()
        acks[key] = _commit(cluster, key, rows[key])
        latencies.append(time.monotonic() - began)
    assert not any(a["replayed"] for a in acks.values())

    cluster.compose("restart", "redis")
    wait_for(
        "/readyz through the load balancer after Redis' restart",
        lambda: ready(cluster.lb),
        READY_TIMEOUT,
    )
    acks[keys[-1]] = wait_for(
        "a commit after Redis' restart",
        lambda: _retry_commit(cluster, keys[-1], rows[keys[-1]]),
        READY_TIMEOUT,
    )
    versions = sorted(a["version"] for a in acks.values())
    assert len(set(versions)) == len(versions)
    before = cluster.settled(READY_TIMEOUT)
    assert before["version"] == versions[-1]
    stored_before = cluster.stored_state()
    assert stored_before["consistent"], stored_before
    assert stored_before["version"] == before["version"]

    cluster.compose("down", "--timeout", "10")
    assert not cluster.containers("reward-service")
    # The trainer already finished its run; a new one would move the version under test.
    cluster.measured["second_up_seconds"] = round(cluster.up(trainer=False), 1)
    wait_for(
        "/readyz through the load balancer after `up`", lambda: ready(cluster.lb), READY_TIMEOUT
    )
    wait_for(
        "reference-init keeping the pool",
        slowly(lambda: "already has a pool: kept" in cluster.logs("reference-init")),
        READY_TIMEOUT,
    )
    after = cluster.settled(READY_TIMEOUT)
    stored = cluster.stored_state()
    cluster.measured["restart"] = {
        "commit_latency_seconds_p50_appendfsync_always": round(float(np.median(latencies)), 4),
        "version_before": before["version"],
        "version_after": after["version"],
        "base_fd_before": before["base_fd"],
        "base_fd_after": after["base_fd"],
        "stored_after": stored,
    }
    assert after["version"] == before["version"] == stored["version"]
    assert after["base_fd"] == pytest.approx(before["base_fd"], rel=1e-9)
    assert stored["consistent"], stored

    # Every acknowledged commit resent with its key: recognised, applied no second time.
    for key, ack in acks.items():
        again = _commit(cluster, key, rows[key])
        assert again["replayed"] and again["version"] == ack["version"], (key, again, ack)
    assert cluster.info()["version"] == before["version"]


def _retry_commit(cluster: LiveCluster, key: str, rows: np.ndarray) -> dict[str, Any] | None:
    """The commit, or None while the service still answers 503 (store reconnecting)."""
    with cluster.client() as client:
        answer = client.post(
            f"/v1/references/{REFERENCE}/commit",
            json={"features": rows.tolist()},
            headers={"Idempotency-Key": key},
        )
    if answer.status_code == 503:
        return None
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@dataclass
class CreditsPhase:
    """What the trainer tokens saw in one credits phase: frozen (``rolling`` False) or with a
    share of every call committed under an idempotency key ``{run}-r{rank}-{call}``."""

    rolling: bool
    measure_from: float  # time.monotonic(): calls sent from then on are measured
    deadline: float  # no call is sent after it
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    latencies: list[float] = field(default_factory=list)
    lag_rows: list[int] = field(default_factory=list)
    turnover_calls: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    behind_own_commit: int = 0
    calls: list[KeyedCall] = field(default_factory=list)
    last_call: dict[int, tuple[KeyedCall, np.ndarray]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_answer: float = 0.0
    client_cpu_share: float = 0.0  # this process's CPU over the phase: near 1, clients set the pace

    def figures(self) -> dict[str, Any]:
        wall = max(self.deadline, self.last_answer) - self.measure_from
        return {
            "requests": len(self.latencies),
            "samples_per_second": round(len(self.latencies) * CREDIT_SAMPLES / wall, 1),
            "latency_seconds": {
                f"p{q}": round(v, 4) if (v := percentile(self.latencies, q)) else v
                for q in (50, 95)
            },
            "served_lag_rows_max": max(self.lag_rows, default=None),
            "turnover_calls_median": (
                float(np.median(self.turnover_calls)) if self.turnover_calls else None
            ),
            "errors": self.errors,
            "client_cpu_share": round(self.client_cpu_share, 2),
        }


def _credits_trainer(cluster: LiveCluster, rank: int, phase: CreditsPhase, d: int) -> None:
    """One trainer token's calls until the phase's deadline: fresh samples each, in the .npy
    form RewardClient sends; rolling, with its key, and ``after`` its last acknowledged commit
    (read your writes, as RewardClient asks)."""
    rng = np.random.default_rng([int(phase.rolling), rank])
    own_version = -1
    with cluster.client(role=cluster.trainers[rank]) as client:
        call = 0
        while time.monotonic() < phase.deadline:
            samples = rng.normal(0.05, 1.0, size=(CREDIT_SAMPLES, d)).astype(np.float32)
            headers = dict(NPY_HEADERS)
            params: dict[str, Any] = {} if own_version < 0 else {"after": own_version}
            keyed = None
            if phase.rolling:
                keyed = KeyedCall(f"{phase.run}-r{rank}-{call}", row_digests(samples))
                headers["Idempotency-Key"] = keyed.key
                params["commit_fraction"] = COMMIT_FRACTION
                with phase.lock:
                    phase.calls.append(keyed)
            call += 1
            measured = time.monotonic() >= phase.measure_from
            began = time.perf_counter()
            try:
                answer = client.post(
                    f"/v1/references/{REFERENCE}/credits",
                    content=npy(samples),
                    headers=headers,
                    params=params,
                )
            except httpx.TransportError as exc:
                phase.errors.append(type(exc).__name__)
                continue
            seconds = time.perf_counter() - began
            if answer.status_code != 200:
                phase.errors.append(f"{answer.status_code}: {answer.text[:200]}")
                continue
            body = answer.json()
            with phase.lock:
                phase.behind_own_commit += body["version"] < own_version
                if keyed is not None:
                    committed = body["committed"]
                    if committed is None:  # 64 x 0.25: every call draws 16 rows
                        phase.errors.append("an answer without its commit")
                        continue
                    keyed.version = own_version = int(committed["version"])
                    keyed.committed_rows = int(committed["rows"])
                    phase.last_call[rank] = (keyed, samples)
                if measured:
                    phase.latencies.append(seconds)
                    phase.lag_rows.append(int(body["lag"]["rows"]))
                    if body["freshness"]["turnover_calls"] is not None:
                        phase.turnover_calls.append(float(body["freshness"]["turnover_calls"]))
                    phase.last_answer = time.monotonic()


def _credits_phase(cluster: LiveCluster, rolling: bool, d: int) -> CreditsPhase:
    start, cpu = time.monotonic(), time.process_time()
    phase = CreditsPhase(
        rolling,
        measure_from=start + CREDITS_WARMUP,
        deadline=start + CREDITS_WARMUP + CREDITS_SECONDS,
    )
    ranks = range(len(cluster.trainers))
    with ThreadPoolExecutor(len(ranks)) as pool:
        for done in [pool.submit(_credits_trainer, cluster, rank, phase, d) for rank in ranks]:
            done.result()  # a trainer's exception fails the test
    phase.client_cpu_share = (time.process_time() - cpu) / (time.monotonic() - start)
    return phase


def test_credits_frozen_and_rolling_through_the_load_balancer(cluster: LiveCluster) -> None:
    before = cluster.settled(READY_TIMEOUT)
    d = before["d"]
    frozen = _credits_phase(cluster, False, d)
    assert cluster.settled(READY_TIMEOUT)["version"] == before["version"]  # nothing committed
    rolling = _credits_phase(cluster, True, d)
    figures = {"frozen": frozen.figures(), "rolling": rolling.figures()}
    ratio = figures["rolling"]["samples_per_second"] / figures["frozen"]["samples_per_second"]
    cluster.measured["credits_through_the_load_balancer"] = {
        "trainer_tokens": len(cluster.trainers),
        "samples_per_call": CREDIT_SAMPLES,
        "commit_fraction": COMMIT_FRACTION,
        "seconds_measured_per_phase": CREDITS_SECONDS,
        "d": d,
        "pool_rows": before["n"],
        **figures,
        "rolling_over_frozen_samples_per_second": round(ratio, 3),
    }
    assert not frozen.errors and not rolling.errors, (frozen.errors[:5], rolling.errors[:5])
    assert frozen.latencies and rolling.latencies
    assert rolling.behind_own_commit == 0  # read your writes
    assert all(call.version is not None for call in rolling.calls)

    settled = cluster.settled(READY_TIMEOUT)
    accounting = cluster.commit_accounting(
        rolling.calls,
        f"{rolling.run}-r",
        start_version=before["version"],
        most_rows=math.ceil(CREDIT_SAMPLES * COMMIT_FRACTION),
    )
    cluster.measured["credits_through_the_load_balancer"]["accounting"] = accounting
    assert all(accounting["checks"].values()), accounting
    stored = accounting["stored"]
    assert stored["consistent"] and stored["version"] == settled["version"], stored
    assert stored["version"] == before["version"] + len(rolling.calls)
    # the replicas agree: each at the stored version, with the stored statistics' base FD
    infos = cluster.replica_infos()  # every replica was ready at the settled version above
    assert infos and len(infos) == len(cluster.running("reward-service")) >= 2, infos
    for info in infos.values():
        assert info["version"] == stored["version"]
        assert info["base_fd"] == pytest.approx(stored["base_fd"], rel=1e-9)

    # Each trainer's last call sent again with its key (keys are each token's own): recognised,
    # applied no second time.
    for rank, (keyed, samples) in rolling.last_call.items():
        with cluster.client(role=cluster.trainers[rank]) as client:
            answer = client.post(
                f"/v1/references/{REFERENCE}/credits",
                content=npy(samples),
                headers={**NPY_HEADERS, "Idempotency-Key": keyed.key},
                params={"commit_fraction": COMMIT_FRACTION},
            )
        assert answer.status_code == 200, answer.text
        committed = answer.json()["committed"]
        assert committed["replayed"] and committed["version"] == keyed.version, committed
    assert cluster.settled(READY_TIMEOUT)["version"] == stored["version"]
