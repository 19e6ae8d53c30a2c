"""What the engine alone allows: rolling against frozen per-sample credits in one process, no
HTTP, no store, no second process.

The service cannot be faster than the arithmetic it serves. A rolling call is a credits call
plus a commit of its share, and about every ``max_rank_fraction * d / 2`` rows committed the pool's
precompute is rebuilt (an O(d^3) eigendecomposition): in the service that build runs beside the
requests, here it runs in line, so that the CPU time each part takes is counted once. Measured
on the same rows as ``bench_rolling``'s reference (:func:`benchmarks.cluster.upload_reference`),
on the threads one service process has, so the ratio printed beside the service's is the
ceiling the mathematics sets on this machine.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from reward_service.engine import RewardEngine

__all__ = ["engine_bound"]


def _reference(d: int, pool: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target mean and covariance and pool rows drawn as ``upload_reference`` draws them."""
    rng = np.random.default_rng(0)
    real = rng.normal(0.1, 1.0, size=(max(2 * d, 64), d)).astype(np.float32).astype(np.float64)
    rows = rng.normal(size=(pool, d)).astype(np.float32).astype(np.float64)
    return real.mean(0), np.cov(real, rowvar=False), rows


def engine_bound(
    *, d: int, pool: int, samples: int, commit_fraction: float, threads: int, seconds: float
) -> dict[str, Any]:
    """Frozen and rolling credits calls for ``seconds`` each on one engine; their rates, the
    ratio, and where a rolling call's time goes (credits, commit, builds in line)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        mu, sigma, rows = _reference(d, pool)
        engine = RewardEngine(mu, sigma, rows, device="cpu")
        del rows
        rng = np.random.default_rng(1)
        committed = math.floor(samples * commit_fraction)

        def fresh() -> np.ndarray:
            return rng.normal(size=(samples, d)).astype(np.float32)

        engine.credits(fresh())  # first-call allocations outside the clock
        frozen_calls, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            engine.credits(fresh())
            frozen_calls += 1
        frozen_rate = frozen_calls / (time.perf_counter() - began)

        parts = {"credits": 0.0, "commit": 0.0, "build": 0.0}
        built_before = engine.rebuilds
        rolling_calls, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            batch = fresh()
            start = time.perf_counter()
            engine.credits(batch)
            middle = time.perf_counter()
            engine.append(batch[:committed])
            end = time.perf_counter()
            parts["credits"] += middle - start
            parts["commit"] += end - middle
            if engine.rebuild_due:
                engine.rebuild()
                parts["build"] += time.perf_counter() - end
            rolling_calls += 1
        rolling_rate = rolling_calls / (time.perf_counter() - began)
        # Builds in line, and those a commit made itself where its rows went past what the
        # pending factorisation holds (their time is the commit's).
        builds = engine.rebuilds - built_before
    finally:
        torch.set_num_threads(previous)
    return {
        "threads": threads,
        "frozen_calls_per_second": frozen_rate,
        "rolling_calls_per_second": rolling_rate,
        "throughput_ratio": rolling_rate / frozen_rate,
        "rolling_call_seconds": {name: value / rolling_calls for name, value in parts.items()},
        "frozen_call_seconds": 1.0 / frozen_rate,
        "builds": builds,
        "rows_per_build": rolling_calls * committed / builds if builds else None,
    }
