"""Per-sample credits: B samples in one request, in both forms, against one group of K and
against B requests.

Trainers need one distribution-wise reward per sample; the engine gives B samples one batched
problem. The ``add`` form (the default: each sample added to the pool, no pool row) takes one
column per sample; the ``replace`` form (one shared replaced row) two. The figures: seconds for
``--samples`` credits in one call in each form and their ratio (the add form must cost no more),
over seconds for one group of ``--group`` (the group reward it replaces), and the same samples
sent one per call. Runs on the engine ``bench_engine`` builds, or alone:
``python -m benchmarks.bench_credits``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reward_service.engine import RewardEngine, sample_credits

__all__ = ["credits_figure"]

RESULTS = Path(__file__).parent / "results" / "credits.json"


def _best(function: Any, repeats: int) -> float:
    """Fastest of ``repeats`` runs, in seconds (the least disturbed by a busy machine)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def credits_figure(
    engine: RewardEngine,
    root: torch.Tensor,
    samples: int = 1024,
    group: int = 64,
    singles: int = 64,
    repeats: int = 3,
) -> dict[str, Any]:
    """Seconds of ``samples`` credits in one call (add form, and replace form), of one group of
    ``group`` and of one-sample calls (``singles`` of them timed, scaled to ``samples``); their
    ratios, and the methods the add-form credits used."""
    generator = torch.Generator().manual_seed(11)
    draw = torch.randn(samples + group, engine.d, generator=generator, dtype=torch.float64)
    features = (draw @ root.T * 1.05 + 0.47).numpy()
    batch, rest = features[:samples], features[samples:]
    sample_credits(engine, batch[:8])  # warm-up: allocations, thread pools
    added = _best(lambda: sample_credits(engine, batch), repeats)
    replaced = _best(lambda: sample_credits(engine, batch, seed=0, form="replace"), repeats)
    one_group = _best(lambda: engine.rewards(rest[None], seed=0), repeats)
    result = sample_credits(engine, batch)

    def one_by_one() -> None:
        for sample in batch[:singles]:
            sample_credits(engine, sample[None])

    single_calls = _best(one_by_one, 1) * samples / singles
    return {
        "samples": samples,
        "group": group,
        "credits_seconds": added,
        "replace_credits_seconds": replaced,
        "credits_over_replace_credits": added / replaced,
        "one_group_seconds": one_group,
        "one_sample_calls_seconds": single_calls,
        "one_sample_calls_timed": singles,
        "credits_over_one_group": added / one_group,
        "one_sample_calls_over_credits": single_calls / added,
        "methods_used": {
            name: sum(m == name for m in result.methods_used) for name in ("lowrank", "exact")
        },
        "max_error_estimate": float(np.nanmax(result.error_estimates))
        if np.isfinite(result.error_estimates).any()
        else None,
    }


def main() -> None:
    from benchmarks.bench_engine import synthetic_features

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--group", type=int, default=64)
    parser.add_argument("--singles", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    mu_r, sigma_r, pool, root = synthetic_features(args.d, args.n, 0)
    engine = RewardEngine(mu_r, sigma_r, pool, device=args.device)
    figure = {"d": args.d, "N": args.n, "device": str(engine.device)}
    figure.update(credits_figure(engine, root, args.samples, args.group, args.singles))
    print(json.dumps(figure, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figure, indent=2) + "\n")


if __name__ == "__main__":
    main()
