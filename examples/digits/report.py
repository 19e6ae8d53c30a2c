"""Results of the demo: ``results.json``, the sample grid and the curves (PNG)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from .config import DemoConfig
from .data import to_pixels

__all__ = ["METRICS", "metrics_of", "plot_curves", "plot_grid", "summarize", "write_results"]

METRICS = ("fid", "class_entropy", "coverage", "confidence")
"""Evaluation metrics of every demo, each reported as ``<metric>_base`` and ``<metric>_final``."""

TITLES = {
    "fid": "FD to real digits (lower is better)",
    "class_entropy": "class entropy (nats)",
    "coverage": "coverage (k = 5)",
    "confidence": "per-sample reward (confidence)",
    "fid_class_mean": "mean per-class FD (lower is better)",
}


def metrics_of(config: DemoConfig) -> tuple[str, ...]:
    """:data:`METRICS`, and for a class-conditional demo the mean per-class FD, the share of
    samples of the asked class and each class's FD (see :class:`~.evaluation.Evaluator`)."""
    if not config.classes:
        return METRICS
    per_class = tuple(f"fid_class{c}" for c in range(config.classes))
    return (*METRICS, "fid_class_mean", "class_accuracy", *per_class)


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, standard deviation (ddof 0), min, max and the values themselves."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "per_seed": v.tolist(),
    }


def evaluations(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The evaluation records of a run, in step order."""
    return [r for r in run["history"] if r["kind"] == "eval"]


def summarize(runs: list[dict[str, Any]], kind: str, metrics: Sequence[str]) -> dict[str, Any]:
    """``<metric>_final`` as the mean over seeds, with ``spread`` of each."""
    finals = [evaluations(r)[-1] for r in runs if r["kind"] == kind]
    spreads = {f"{m}_final": spread([f[m] for f in finals]) for m in metrics}
    return {**{k: s["mean"] for k, s in spreads.items()}, "spread": spreads}


def freshness(runs: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """Pool freshness (share of rows committed within the service's window) over the last
    quarter of each run's steps, averaged per seed; None for sources that report none."""
    shares = []
    for run in runs:
        if run["kind"] != kind:
            continue
        values = [r["freshness"] for r in run["history"] if "freshness" in r]
        if values:
            shares.append(float(np.mean(values[-max(1, len(values) // 4) :])))
    return spread(shares) if shares else None


def acceptance(base: dict[str, float], kinds: dict[str, Any]) -> dict[str, Any]:
    """The criteria of the kinds that ran, evaluated on the means over seeds (and counted per
    seed where it says so)."""
    checks: dict[str, Any] = {}
    credits, stalled = kinds.get("credits"), kinds.get("credits_stalled")
    dist, per = kinds.get("distribution"), kinds.get("per_sample")
    for name in ("credits", "credits_4ranks"):  # one process, or ranks: the same bar
        if (run := kinds.get(name)) is None:
            continue
        checks[f"{name}_fid_at_least_30pct_below_base"] = run["fid_final"] <= 0.7 * base["fid"]
        for metric in ("class_entropy", "coverage"):
            kept = run[f"{metric}_final"] >= 0.95 * base[metric]
            checks[f"{name}_{metric}_at_least_95pct_of_base"] = kept
    if stalled is not None:
        checks["stalled_fid_above_base"] = stalled["fid_final"] > base["fid"]
        if credits is not None:
            checks["stalled_fid_above_credits"] = stalled["fid_final"] > credits["fid_final"]
    if dist is not None:
        fid_seeds = dist["spread"]["fid_final"]["per_seed"]
        checks["distribution_fid_below_base"] = dist["fid_final"] < base["fid"]
        checks["distribution_seeds_fid_below_base"] = sum(f < base["fid"] for f in fid_seeds)
        for metric in ("class_entropy", "coverage"):
            near = abs(dist[f"{metric}_final"] - base[metric]) <= 0.1 * abs(base[metric])
            checks[f"distribution_{metric}_within_10pct"] = near
    if per is not None:
        checks["per_sample_reward_raised"] = per["confidence_final"] > base["confidence"]
        checks["per_sample_class_entropy_lost"] = per["class_entropy_final"] < base["class_entropy"]
        if dist is not None:
            checks["per_sample_fid_worse_than_distribution"] = per["fid_final"] > dist["fid_final"]
    return checks


def write_results(
    config: DemoConfig,
    base: dict[str, float],
    accuracy: float,
    runs: list[dict[str, Any]],
    wall_seconds: float,
) -> dict[str, Any]:
    """Assemble and write ``out/results.json``; returns it: the base's ``<metric>_base``, one
    entry per reward kind (its ``<metric>_final`` means over seeds, their ``spread`` and the
    pool ``freshness``), the ``acceptance`` checks, timings and the configuration."""
    metrics = metrics_of(config)
    kinds = {
        kind: {**summarize(runs, kind, metrics), "freshness": freshness(runs, kind)}
        for kind in config.kinds
    }
    results = {
        "conditional": bool(config.classes),
        **{f"{m}_base": base[m] for m in metrics},
        **kinds,
        "acceptance": acceptance(base, kinds),
        "seeds": list(config.seeds),
        "steps": config.worker.steps,
        "wall_seconds": wall_seconds,
        "run_seconds": {f"{r['kind']}-seed{r['seed']}": r["seconds"] for r in runs},
        "feature_cnn_heldout_accuracy": accuracy,
        "config": json.loads(json.dumps(asdict(config), default=str)),
    }
    (config.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _tile(images: np.ndarray) -> np.ndarray:
    """Square mosaic of (n, 8, 8) images with one-pixel gaps."""
    side = int(np.ceil(np.sqrt(len(images))))
    canvas = np.zeros((side * 9 + 1, side * 9 + 1))  # gaps: blank
    for i, img in enumerate(images):
        r, c = divmod(i, side)
        canvas[1 + r * 9 : r * 9 + 9, 1 + c * 9 : c * 9 + 9] = img
    return canvas


def plot_grid(panels: dict[str, np.ndarray], path: Path) -> None:
    """One mosaic per panel title, side by side (images in model space, (n, 1, 8, 8))."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4))
    for ax, (title, images) in zip(np.atleast_1d(axes), panels.items(), strict=True):
        ax.imshow(_tile(to_pixels(images)), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(
    config: DemoConfig, runs: list[dict[str, Any]], base: dict[str, float], path: Path
) -> None:
    """FD, class entropy, coverage, confidence (and a conditional demo's mean per-class FD)
    over steps: mean over seeds with the min–max band, one colour per reward kind."""
    shown = [m for m in metrics_of(config) if m in TITLES]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown), 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes, shown, strict=True):
        for kind, colour in zip(config.kinds, colours, strict=False):
            evals = [evaluations(run) for run in runs if run["kind"] == kind]
            steps = [r["step"] for r in evals[0]]
            values = np.array([[r[metric] for r in e] for e in evals])
            ax.plot(steps, values.mean(0), color=colour, label=kind.replace("_", "-"))
            ax.fill_between(steps, values.min(0), values.max(0), color=colour, alpha=0.2)
        ax.axhline(base[metric], color="grey", linestyle="--", label="base")
        ax.set_title(TITLES[metric])
        ax.set_xlabel("policy update")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
