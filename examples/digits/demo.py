"""The demo's orchestration: base networks, service, fine-tuning runs, results and plots."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import base_flow, feature_cnn, load_base
from .config import KINDS, DemoConfig, job_parser, job_settings
from .ranks import run_ranks
from .report import plot_curves, plot_grid, write_results
from .runs import (
    SAMPLES,
    evaluator_for,
    run_dir,
    run_one,
    upload_class_targets,
    upload_reference,
)
from .service import reward_service

__all__ = ["main", "parse_args", "run_demo"]

log = logging.getLogger("examples.digits")


def parse_args(argv: list[str] | None = None) -> DemoConfig:
    """Command-line settings over the defaults of :class:`DemoConfig` (or of its
    :meth:`~DemoConfig.unconditional` form with ``--unconditional``)."""
    default = DemoConfig()
    parser = job_parser(
        "python -m examples.digits", "Distribution-wise rewards on the digits.", default
    )
    parser.add_argument(
        "--unconditional", action="store_true", help="an unconditional flow, not one per class"
    )
    parser.add_argument(
        "--kinds", nargs="+", choices=KINDS, help=f"rewards compared ({' '.join(default.kinds)})"
    )
    # None: the setting of the demo chosen (conditional or --unconditional).
    parser.add_argument("--steps", type=int, help=f"policy updates ({default.worker.steps})")
    parser.add_argument("--jobs", type=int, default=default.jobs, help="runs in parallel")
    parser.add_argument("--lr", type=float, help=f"Adam step size ({default.worker.lr})")
    parser.add_argument("--eval-every", type=int, help=f"({default.worker.eval_every})")
    parser.add_argument("--resume", action="store_true", help="continue interrupted runs")
    parser.add_argument(
        "--lag-rows",
        type=int,
        default=default.lag_rows,
        help="credits runs: keep the pool this many rows (the newest commits) behind the policy",
    )
    args = parser.parse_args(argv)
    if args.unconditional:
        default = default.unconditional()
    kinds = tuple(dict.fromkeys(args.kinds)) if args.kinds else default.kinds
    if args.lag_rows < 0:
        parser.error("--lag-rows must be >= 0")
    if args.lag_rows and "credits_4ranks" in kinds:
        parser.error("--lag-rows applies to the single-process credits runs, not credits_4ranks")
    given = {"steps": args.steps, "lr": args.lr, "eval_every": args.eval_every}
    worker = dataclasses.replace(
        default.worker, **{k: v for k, v in given.items() if v is not None}
    )
    return dataclasses.replace(
        default,
        **job_settings(args),
        kinds=kinds,
        jobs=args.jobs,
        resume=args.resume,
        lag_rows=args.lag_rows,
        worker=worker,
    )


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m examples.digits [options]``; returns what it wrote to ``results.json``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    return run_demo(parse_args(argv))


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the demo; returns what it wrote to ``results.json``.

    Every process (this one and ``jobs`` workers) gets ``cores // jobs`` torch threads: the
    networks are small, and oversubscribed OpenMP threads spin-wait on a busy CPU. The workers
    first train the two base networks side by side (on a cold cache), then run the fine-tuning.
    """
    start = time.perf_counter()
    threads = max(1, _cores() // config.jobs)
    torch.set_num_threads(threads)
    config.out.mkdir(parents=True, exist_ok=True)
    with (
        ProcessPoolExecutor(
            config.jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=torch.set_num_threads,
            initargs=(threads,),
        ) as pool,
        reward_service(config.out / "service.log") as endpoint,
        endpoint.client() as client,
    ):
        cnn_job, flow_job = pool.submit(feature_cnn, config), pool.submit(base_flow, config)
        cnn_job.result(), flow_job.result()  # cached by the workers; loaded below
        base = load_base(config)
        log.info("base networks ready (%.1f s)", time.perf_counter() - start)
        upload_reference(client, "digits-base", base, base.pool(config))
        upload_class_targets(client, base, config.classes)
        evaluator = evaluator_for(config, base, client, "digits-base")
        base_metrics = evaluator(base.flow)
        log.info("base: %s", base_metrics)
        futures = [
            pool.submit(
                run_ranks if kind == "credits_4ranks" else run_one, config, endpoint, kind, seed
            )
            for seed in config.seeds
            for kind in config.kinds
        ]
        runs = []
        for future in tqdm(as_completed(futures), total=len(futures), desc="runs"):
            run = future.result()
            log.info("%s seed %d done in %.1f s", run["kind"], run["seed"], run["seconds"])
            runs.append(run)
        base_samples = evaluator.samples(base.flow, config.grid).numpy()
    runs.sort(key=lambda r: (config.kinds.index(r["kind"]), r["seed"]))
    first = config.seeds[0]
    panels = {TITLES[kind]: _samples(config, kind, first) for kind in config.kinds}
    plot_grid({"base": base_samples, **panels}, config.out / "samples.png")
    plot_curves(config, runs, base_metrics, config.out / "curves.png")
    results = write_results(config, base_metrics, base.accuracy, runs, time.perf_counter() - start)
    log.info("wrote %s (%.1f s)", config.out / "results.json", results["wall_seconds"])
    return results


TITLES = {
    "distribution": "group rewards",
    "per_sample": "per-sample confidence",
    "credits": "per-sample credits",
    "credits_stalled": "credits, stalled pool",
    "credits_4ranks": "credits, 4 ranks",
    "loo_credits": "leave-one-out credits",
}
"""Sample-grid panel titles of the reward kinds."""


def _samples(config: DemoConfig, kind: str, seed: int) -> np.ndarray:
    return np.load(run_dir(config, kind, seed) / SAMPLES)
