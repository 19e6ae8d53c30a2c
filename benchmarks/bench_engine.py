"""Engine benchmark: seconds per group for naive, exact and low-rank subset-replace rewards.

Run with ``make bench`` (``python -m benchmarks.bench_engine``). One run measures, on the same
data and the same replaced rows:

* ``naive``  -- what a trainer with pytorch-fid does per group: write the group into a copy of
  the pool, rebuild mean and covariance (O(N d^2)) and take scipy's ``sqrtm(S_g S_r)`` (O(d^3),
  complex Schur). Too slow for every group: timed on ``--naive-groups`` of them.
* ``torchmetrics`` -- what a trainer computing FID with torchmetrics does per group: running
  sums updated, covariance rebuilt, ``eigvals(S_g S_r)`` (non-symmetric, complex) on the engine's
  device. Also timed on ``--naive-groups`` groups.
* ``exact``  -- incremental statistics and one float64 ``eigvalsh`` per group.
* ``lowrank`` -- the certified quadrature, batched over the groups.

Ratios are against ``naive`` from the same run; errors are max |reward - exact reward|. The run
then commits while reward requests keep arriving and a background thread rebuilds whenever a
commit is pending (as a replica does): it reports each commit's answer latency (the new version
and its certified base FD) against the duration of one version rebuild (the O(d^3) precompute),
the rebuilds against the commits, and the reward latency meanwhile; once at a trainer step's
pace (``--commit-interval``) and once far faster than rebuilds (``--fast-commit-interval``),
where many commits pend on one build and each extends the pending factorisation.
Results go to ``benchmarks/results/engine.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch

from benchmarks.bench_credits import credits_figure
from reward_service.engine import RewardEngine

RESULTS = Path(__file__).parent / "results" / "engine.json"


def synthetic_features(
    d: int, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """A pool of ``n`` features with covariance condition 1e3 (eigenvalues log-spaced, as in
    CNN feature spaces), and a target whose covariance is 1.2x that and whose mean is shifted:
    ``M = A S A`` then has condition ~1e6. Returns target mean, target covariance, pool, and
    the square-root basis used to draw more features."""
    generator = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))[0]
    spectrum = torch.logspace(0, -3, d, dtype=torch.float64)
    root = basis * spectrum.sqrt()
    pool = torch.randn(n, d, generator=generator, dtype=torch.float64) @ root.T + 0.5
    target_sigma = (basis * (1.2 * spectrum)) @ basis.T
    target_mu = torch.full((d,), 0.45, dtype=torch.float64)
    return target_mu.numpy(), target_sigma.numpy(), pool.numpy(), root


def naive_fd(features: np.ndarray, mu_r: np.ndarray, sigma_r: np.ndarray) -> float:
    """FD the way pytorch-fid computes it: covariance from scratch, scipy ``sqrtm`` of the
    non-symmetric product, a diagonal offset when the root is not finite, imaginary part
    dropped."""
    mu = features.mean(0)
    sigma = np.cov(features, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma @ sigma_r)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma + offset) @ (sigma_r + offset))
    covmean = np.real(covmean)
    diff = mu - mu_r
    return float(diff @ diff + np.trace(sigma) + np.trace(sigma_r) - 2.0 * np.trace(covmean))


def torchmetrics_fd(
    total: torch.Tensor, gram: torch.Tensor, n: int, mu_r: torch.Tensor, sigma_r: torch.Tensor
) -> float:
    """FD from running sums the way torchmetrics computes it: covariance from the sums, then
    ``sum sqrt(eigvals(S_g S_r))`` of the non-symmetric product, real part kept."""
    mean = total / n
    covariance = (gram - n * torch.outer(mean, mean)) / (n - 1)
    cross = torch.linalg.eigvals(covariance @ sigma_r).sqrt().real.sum()
    diff = mean - mu_r
    return float(diff @ diff + covariance.trace() + sigma_r.trace() - 2.0 * cross)


def torchmetrics_rewards(
    engine: RewardEngine,
    target: tuple[np.ndarray, np.ndarray],
    groups: torch.Tensor,
    rows: np.ndarray,
) -> np.ndarray:
    """Per group: update the running sums for the replaced rows, then :func:`torchmetrics_fd`."""
    device = engine.device
    statistics = engine.statistics()
    sums, squares = statistics.raw_sums()
    n = statistics.n
    total, gram = torch.as_tensor(sums, device=device), torch.as_tensor(squares, device=device)
    mu_r, sigma_r = (torch.as_tensor(v, device=device) for v in target)
    removed = torch.as_tensor(engine.pool()[rows], device=device)
    base = torchmetrics_fd(total, gram, n, mu_r, sigma_r)
    rewards = []
    for group in groups.to(device):
        new_total = total - removed.sum(0) + group.sum(0)
        new_gram = gram - removed.T @ removed + group.T @ group
        rewards.append(base - torchmetrics_fd(new_total, new_gram, n, mu_r, sigma_r))
    return np.array(rewards)


def timed(function: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def bench_group_size(
    engine: RewardEngine,
    pool: np.ndarray,
    target: tuple[np.ndarray, np.ndarray],
    root: torch.Tensor,
    size: int,
    args: argparse.Namespace,
    naive_base_fd: float,
) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(size)
    d = pool.shape[1]
    shape = (args.groups, size, d)
    groups = torch.randn(*shape, generator=generator, dtype=torch.float64) @ root.T * 1.05 + 0.47
    groups_np = groups.numpy()
    for method in ("lowrank", "exact"):  # warm-up: allocator, thread pools, kernels
        engine.rewards(groups[:2], seed=0, method=method)
    lowrank, lowrank_seconds = timed(lambda: engine.rewards(groups_np, seed=args.seed))
    exact, exact_seconds = timed(lambda: engine.rewards(groups_np, seed=args.seed, method="exact"))
    rows = exact.indices[0]
    naive_rewards = []
    started = time.perf_counter()
    for group in groups_np[: args.naive_groups]:
        modified = pool.copy()
        modified[rows] = group
        naive_rewards.append(naive_base_fd - naive_fd(modified, *target))
    naive_seconds = (time.perf_counter() - started) / args.naive_groups
    torchmetrics, torchmetrics_seconds = timed(
        lambda: torchmetrics_rewards(engine, target, groups[: args.naive_groups], rows)
    )
    per_group = {
        "naive": naive_seconds,
        "torchmetrics": torchmetrics_seconds / args.naive_groups,
        "exact": exact_seconds / args.groups,
        "lowrank": lowrank_seconds / args.groups,
    }
    errors = {
        "naive": float(
            np.max(np.abs(np.array(naive_rewards) - exact.rewards[: args.naive_groups]))
        ),
        "torchmetrics": float(np.max(np.abs(torchmetrics - exact.rewards[: args.naive_groups]))),
        "exact": 0.0,
        "lowrank": float(np.max(np.abs(lowrank.rewards - exact.rewards))),
    }
    methods = {
        name: {
            "seconds_per_group": seconds,
            "speedup_over_naive": naive_seconds / seconds,
            "max_abs_reward_error_vs_exact": errors[name],
            "groups_timed": args.groups if name in ("exact", "lowrank") else args.naive_groups,
        }
        for name, seconds in per_group.items()
    }
    methods["lowrank"]["fallback_fraction"] = lowrank.methods_used.count("exact") / args.groups
    methods["lowrank"]["speedup_over_exact"] = per_group["exact"] / per_group["lowrank"]
    methods["lowrank"]["speedup_over_torchmetrics"] = (
        per_group["torchmetrics"] / per_group["lowrank"]
    )
    return {
        "K": size,
        "G": args.groups,
        "reward_scale": float(np.max(np.abs(exact.rewards))),
        "tolerance": max(
            1e-6 * float(np.min(np.abs(exact.rewards))), 1e-9 * max(1.0, engine.base_fd)
        ),
        "methods": methods,
    }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 99)} | {"max": max(values)}


def commits_while_serving(
    engine: RewardEngine,
    root: torch.Tensor,
    groups: np.ndarray,
    args: argparse.Namespace,
    commits_made: int,
    interval: float,
) -> dict[str, Any]:
    """``commits_made`` commits of ``args.commit_rows`` rows, one every ``interval`` seconds,
    while one thread keeps asking for rewards of ``groups`` and another rebuilds whenever a
    commit is pending (coalescing whatever arrived meanwhile)."""
    rebuilds_before = engine.rebuilds
    stop = threading.Event()
    rewards: list[tuple[float, int, int]] = []  # seconds, version, built version
    rebuilds: list[float] = []

    def serve() -> None:
        while not stop.is_set():
            result = engine.rewards(groups, seed=len(rewards))
            rewards.append((result.compute_seconds, result.version, engine.built_version))

    def rebuild() -> None:
        while not stop.is_set():
            if not engine.pending_rows:
                stop.wait(0.01)
                continue
            seconds = timed(engine.rebuild)[1]
            rebuilds.append(seconds)

    threads = [threading.Thread(target=serve), threading.Thread(target=rebuild)]
    for thread in threads:
        thread.start()
    generator = torch.Generator().manual_seed(args.seed + 1)
    commits = []
    try:
        for _ in range(commits_made):
            rows = torch.randn(args.commit_rows, engine.d, generator=generator, dtype=torch.float64)
            rows = (rows @ root.T * 1.05 + 0.47).numpy()
            committed, seconds = timed(lambda rows=rows: engine.append(rows))
            commits.append((seconds, committed))
            stop.wait(interval)
        while engine.pending_rows:  # the last rebuild lands
            stop.wait(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    latencies = [seconds for seconds, _ in commits]
    rebuild_p50 = float(np.median(rebuilds)) if rebuilds else float("nan")
    exact_fd = engine.fd(engine.pool())
    return {
        "commits": len(commits),
        "commit_rows": args.commit_rows,
        "commit_interval_seconds": interval,
        "commit_answer_seconds": _percentiles(latencies),
        "commit_methods": {
            name: sum(c.method == name for _, c in commits) for name in ("lowrank", "exact")
        },
        "max_pending_rows_at_commit": max(c.pending_rows for _, c in commits),
        "pending_rows_and_seconds": [(c.pending_rows, seconds) for seconds, c in commits],
        "max_base_fd_error_estimate": max(c.error_estimate for _, c in commits),
        "rebuilds": engine.rebuilds - rebuilds_before,
        "background_rebuilds": len(rebuilds),
        "rebuild_seconds": _percentiles(rebuilds),
        "commit_p50_over_rebuild_p50": float(np.median(latencies)) / rebuild_p50,
        "reward_requests_during_commits": len(rewards),
        "reward_request_groups": list(groups.shape[:2]),
        "reward_seconds_during_commits": _percentiles([r[0] for r in rewards]),
        "reward_requests_ahead_of_build": sum(version > built for _, version, built in rewards),
        "final_version": engine.version,
        "final_base_fd_relative_error_vs_recompute": abs(engine.base_fd - exact_fd) / exact_fd,
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"\nd={report['d']} N={report['N']} device={report['device']} ({report['cpu']})")
    print(f"{'K':>4} {'method':>8} {'s/group':>10} {'x naive':>9} {'x exact':>8} {'max|err|':>10}")
    for case in report["cases"]:
        for name, row in case["methods"].items():
            over_exact = row.get("speedup_over_exact", float("nan"))
            print(
                f"{case['K']:>4} {name:>8} {row['seconds_per_group']:>10.4f} "
                f"{row['speedup_over_naive']:>9.1f} {over_exact:>8.1f} "
                f"{row['max_abs_reward_error_vs_exact']:>10.2e}"
            )
        fallback = case["methods"]["lowrank"]["fallback_fraction"]
        print(f"     lowrank fallback fraction: {fallback:.3f}; tolerance {case['tolerance']:.2e}")
    print(f"naive timed on {report['naive_groups']} groups per K (too slow for all).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 16])
    parser.add_argument("--naive-groups", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--commit-rows", type=int, default=16)
    parser.add_argument(
        "--commit-interval", type=float, default=8.0, help="seconds (a trainer step)"
    )
    parser.add_argument(
        "--fast-commits", type=int, default=40, help="commits of a second run, faster"
    )
    parser.add_argument(
        "--fast-commit-interval",
        type=float,
        default=1.0,
        help="seconds between them: commits far faster than rebuilds",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    mu_r, sigma_r, pool, root = synthetic_features(args.d, args.n, args.seed)
    engine, build_seconds = timed(lambda: RewardEngine(mu_r, sigma_r, pool, device=args.device))
    naive_base_fd = naive_fd(pool, mu_r, sigma_r)
    report = {
        "d": args.d,
        "N": args.n,
        "device": str(engine.device),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "engine_build_seconds": build_seconds,
        "base_fd": engine.base_fd,
        "naive_base_fd_minus_engine": naive_base_fd - engine.base_fd,
        "naive_groups": args.naive_groups,
        "cases": [
            bench_group_size(engine, pool, (mu_r, sigma_r), root, size, args, naive_base_fd)
            for size in args.sizes
        ],
    }
    groups = (
        torch.randn(4 * 16, args.d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        @ root.T
        * 1.05
        + 0.47
    ).numpy()
    serving = commits_while_serving(
        engine, root, groups.reshape(4, 16, -1), args, args.commits, args.commit_interval
    )
    report["commits_while_serving"] = serving
    fast = commits_while_serving(
        engine, root, groups.reshape(4, 16, -1), args, args.fast_commits, args.fast_commit_interval
    )
    report["commits_while_serving_fast"] = fast
    credits = report["per_sample_credits"] = credits_figure(engine, root)
    print_table(report)
    for run in (serving, fast):
        answer, rebuild = run["commit_answer_seconds"], run["rebuild_seconds"]
        print(
            f"commits ({run['commits']} x {args.commit_rows} rows every "
            f"{run['commit_interval_seconds']} s, rewards in flight): answer p50 "
            f"{answer['p50']:.3f} s, p99 {answer['p99']:.3f} s; one rebuild p50 "
            f"{rebuild['p50'] or float('nan'):.2f} s "
            f"(ratio {run['commit_p50_over_rebuild_p50']:.3f}); {run['rebuilds']} rebuilds, "
            f"up to {run['max_pending_rows_at_commit']} rows pending; reward requests p50 "
            f"{run['reward_seconds_during_commits']['p50']:.3f} s meanwhile"
        )
    print(
        f"per-sample credits: {credits['samples']} samples in one call "
        f"{credits['credits_seconds']:.2f} s (add form) = "
        f"{credits['credits_over_replace_credits']:.2f}x the replace form, "
        f"{credits['credits_over_one_group']:.2f}x one group of {credits['group']}; "
        f"{credits['one_sample_calls_over_credits']:.1f}x faster than "
        f"{credits['samples']} one-sample calls"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
