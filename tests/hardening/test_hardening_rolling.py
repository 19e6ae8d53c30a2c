"""The rolling-pool benchmark (``benchmarks/bench_rolling.py``, in ``make bench``) at a small
size: frozen and rolling credits in both orders through two processes on one Redis, every check
true; client timeouts counted, and the commits of timed-out calls accounted for; and its commit
accounting, which must tell a faithful history from a lost, doubled or misrecorded commit."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_rolling import main
from benchmarks.commit_accounting import KeyedCall, row_digests, verify_commits
from reward_service.store.base import LogEntry


@pytest.mark.redis
def test_a_short_rolling_run_passes_its_checks(tmp_path: Path) -> None:
    output = tmp_path / "rolling.json"
    status = main(
        [
            "--d",
            "64",
            "--pool",
            "2000",
            "--trainers",
            "2",
            "--warmup",
            "1",
            "--duration",
            "2",
            "--orders",
            "2",
            "--engine-seconds",
            "1",
            "--output",
            str(output),
        ]
    )
    result = json.loads(output.read_text())
    assert status == 0, result["checks"]
    bound = result["engine_bound"]
    # 16 rows a call against the low-rank path's 7 pending rows at d = 64: a build every call.
    assert bound["builds"] >= 1 and bound["rows_per_build"] == 16
    assert bound["frozen_calls_per_second"] > 0 and bound["rolling_calls_per_second"] > 0
    assert set(bound["rolling_call_seconds"]) == {"credits", "commit", "build"}
    assert result["passed"] and result["checks"] and all(result["checks"].values())
    phases = result["phases"]
    assert [(p["mode"], p["order"]) for p in phases] == [
        ("frozen", 0),
        ("rolling", 0),
        ("rolling", 1),
        ("frozen", 1),
    ]
    for phase in phases:
        assert phase["errors"] == {} and phase["timeouts"] == 0
        assert phase["requests"] > 0 and phase["samples_per_second"] > 0
        latency = phase["latency_seconds"]
        assert latency["p99"] >= latency["p95"] >= latency["p50"] > 0
        assert set(phase["served_lag"]) == {"lag_rows", "lag_versions"}
        assert set(phase["turnover"]) == {"rows_per_call", "turnover_calls"}
        assert len(phase["rebuilds_per_process"]) == 2
        assert phase["client_cpu_share"] > 0 and phase["load_average_1m_after"] >= 0
    for phase in phases:
        if phase["mode"] == "frozen":
            assert phase["commits_acknowledged"] == 0 and "checks" not in phase
            continue
        assert all(phase["checks"].values())
        commits = phase["commits"]
        # Nothing timed out: every call sent was acknowledged and recorded.
        assert phase["commits_acknowledged"] == commits["keys_acknowledged"]
        assert commits["keys_sent"] == commits["keys_acknowledged"] == commits["keys_recorded"]
        assert phase["process_versions"] == [phase["stored"]["version"]] * 2
        assert phase["stored"]["consistent"]
        # 16 rows a call: these runs commit more rows than the pool holds.
        assert commits["committed_rows_in_pool"] == 2000
    assert phases[2]["stored"]["version"] > phases[1]["stored"]["version"]
    ratios = result["ratios"]
    assert ratios["throughput"] > 0 and ratios["p95"] > 0 and len(ratios["per_order"]) == 2
    assert result["targets"]["no_errors_or_timeouts"]


@pytest.mark.redis
def test_client_timeouts_are_counted_and_their_commits_accounted_for(tmp_path: Path) -> None:
    """A 1 ms client timeout (per network operation, as httpx counts it): calls time out,
    nothing retries them, and the commits the service applied all the same are each in Redis
    once, under their keys."""
    output = tmp_path / "rolling.json"
    main(
        [
            *("--d", "64", "--pool", "2000", "--trainers", "2"),
            *("--warmup", "0.5", "--duration", "1", "--timeout", "0.001", "--engine-seconds", "0"),
            *("--output", str(output)),
        ]
    )
    result = json.loads(output.read_text())
    frozen, rolling = result["phases"]
    assert frozen["timeouts"] > 0 and rolling["timeouts"] > 0
    assert not result["targets"]["no_errors_or_timeouts"]
    commits = rolling["commits"]
    assert commits["keys_sent"] >= rolling["timeouts"] + commits["keys_acknowledged"]
    assert commits["keys_recorded"] >= commits["keys_acknowledged"]
    # Whether any answer came back in time is up to the machine; everything else must hold.
    assert all(ok for name, ok in rolling["checks"].items() if name != "commits_acknowledged")


# -- the commit accounting on histories built by hand --------------------------------------

D, POOL, SENT, SHARE = 3, 10, 4, 2  # row width, pool rows, rows a call sends, rows it commits


def _history(calls: int, *, applied_unanswered: int | None = None) -> dict:
    """``calls`` keyed calls of ``SENT`` rows, each committing its first ``SHARE`` rows to a
    ring pool of ``POOL`` rows, acknowledged at versions 2, 3, ... (the pool is version 1);
    call ``applied_unanswered`` was applied but its answer lost."""
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(POOL, D)).astype(np.float32).astype(np.float64)
    sent, log, recorded = [], [], {}
    cursor = 0
    for number in range(calls):
        rows = rng.normal(size=(SENT, D)).astype(np.float32)
        version = 2 + number
        call = KeyedCall(f"run-r0-{number}", row_digests(rows))
        if number != applied_unanswered:
            call.version, call.committed_rows = version, SHARE
        sent.append(call)
        recorded[call.key] = version
        log.append(LogEntry(f"{version}-0", version, "commit", rows[:SHARE].astype(np.float64)))
        for row in rows[:SHARE]:
            pool[cursor] = row
            cursor = (cursor + 1) % POOL
    return {
        "calls": sent,
        "recorded": recorded,
        "log": log,
        "pool": pool,
        "stored_version": 1 + calls,
    }


def _verify(history: dict) -> dict[str, bool]:
    checks, _ = verify_commits(
        history["calls"],
        history["recorded"],
        start_version=1,
        stored_version=history["stored_version"],
        log=history["log"],
        pool=history["pool"],
        most_rows_per_commit=SHARE,
    )
    return checks


@pytest.mark.parametrize("calls", [3, 12])  # the pool turned over, or not
def test_the_accounting_passes_a_faithful_history(calls: int) -> None:
    history = _history(calls)
    assert all(_verify(history).values())
    history["log"] = history["log"][calls // 2 :]  # trimmed by a snapshot: still faithful
    assert all(_verify(history).values())


def test_a_commit_applied_but_unanswered_is_accounted_for() -> None:
    assert all(_verify(_history(3, applied_unanswered=1)).values())


def test_a_doubled_commit_is_caught() -> None:
    history = _history(3)
    again = history["log"][1]
    history["log"].append(replace(again, log_id="5-0", version=5))
    history["pool"][6 : 6 + SHARE] = again.features
    history["stored_version"] = 5
    checks = _verify(history)
    assert not checks["one_commit_per_version"]
    assert not checks["log_entries_hold_their_rows"]
    assert not checks["pool_holds_committed_rows_once"]


def test_a_lost_commit_is_caught() -> None:
    history = _history(3)
    history["pool"][2:4] = np.random.default_rng(1).normal(size=(SHARE, D))  # call 1's rows
    del history["log"][1]
    assert not _verify(history)["pool_holds_committed_rows_once"]


def test_a_misrecorded_key_is_caught() -> None:
    history = _history(3)
    history["recorded"]["run-r0-1"] = 7
    checks = _verify(history)
    assert not checks["acknowledged_keys_recorded"]
    assert not checks["one_commit_per_version"]


def test_rows_of_another_request_in_a_commit_are_caught() -> None:
    history = _history(3)
    history["log"][0] = replace(history["log"][0], features=history["log"][2].features)
    assert not _verify(history)["log_entries_hold_their_rows"]
