"""Results of the merge demo: ``results.json`` and the plot of learned weights and FD over steps."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from .report import spread

if TYPE_CHECKING:
    from .merge_demo import MergeDemoConfig

__all__ = ["BASELINES", "acceptance", "plot_merge", "write_merge_results"]

BASELINES = ("last", "best_single", "uniform", "ema_style", "training_ema")
"""The methods the learned merge is compared with (see :mod:`.merge_demo`)."""

DIVERSITY = ("class_entropy", "coverage")


def acceptance(fid: dict[str, dict[str, Any]], learned: str) -> dict[str, Any]:
    """The issue's criterion for merge ``learned``: its mean FID over seeds below every
    baseline's mean; with per-seed win counts (same evaluation noise, paired)."""
    mine = fid[learned]
    return {
        "below_every_baseline_mean": all(mine["mean"] < fid[b]["mean"] for b in BASELINES),
        "below_baseline_mean": {b: mine["mean"] < fid[b]["mean"] for b in BASELINES},
        "seeds_below_baseline": {
            b: sum(x < y for x, y in zip(mine["per_seed"], fid[b]["per_seed"], strict=True))
            for b in BASELINES
        },
    }


def write_merge_results(
    config: MergeDemoConfig,
    names: list[str],
    fixed: dict[str, np.ndarray],
    selection_fid: dict[str, float],
    runs: list[dict[str, Any]],
    wall_seconds: float,
) -> dict[str, Any]:
    """Assemble and write ``<out>/results.json`` (and the runs' histories); returns it.

    ``fid[method]`` is the mean, std (ddof 0), min, max and per-seed values of that method's FID
    on the evaluation noise, ``diversity[method]`` the same for class entropy and coverage
    (:mod:`.metrics`: a merge that bought FID with lost modes shows here); ``snapshot_fid``
    the FID spread of every single snapshot (what an oracle choice on the evaluation set would
    see); ``selection_fid`` each snapshot's FID on the selection noise, which chose
    ``best_single``.
    """
    learned = list(runs[0]["weights"])
    methods = [*BASELINES, *learned]
    fid = {m: spread([r["fid"][m] for r in runs]) for m in methods}
    results = {
        "fid": fid,
        "diversity": {
            m: {k: spread([r["diversity"][m][k] for r in runs]) for k in DIVERSITY} for m in methods
        },
        "learned_merge": learned[0],
        "acceptance": {m: acceptance(fid, m) for m in learned},
        "snapshots": names,
        "learned_weights": {
            m: {
                "mean": np.mean([r["weights"][m] for r in runs], axis=0).tolist(),
                "per_seed": [r["weights"][m] for r in runs],
            }
            for m in learned
        },
        "baseline_weights": {k: v.tolist() for k, v in fixed.items()},
        "selection_fid": selection_fid,
        "snapshot_fid": {n: spread([r["snapshot_fid"][n] for r in runs]) for n in names},
        "seeds": [r["seed"] for r in runs],
        "eval_seeds": [r["eval_seed"] for r in runs],
        "wall_seconds": wall_seconds,
        "config": json.loads(json.dumps(asdict(config), default=str)),
    }
    (config.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    history = [{"seed": r["seed"], "history": r["history"]} for r in runs]
    (config.out / "history.json").write_text(json.dumps(history) + "\n")
    return results


def _weights_over_steps(runs: list[dict[str, Any]], learned: str) -> tuple[list[int], np.ndarray]:
    """Steps 0..T and the mean merge's weights (T + 1, n) after each, averaged over seeds."""
    per_seed = []
    for run in runs:
        history = run["history"][learned]
        start = next(r for r in history if r["kind"] == "eval" and r["step"] == 0)
        per_seed.append(
            [start["weights"]] + [r["weights"] for r in history if r["kind"] == "train"]
        )
    steps = list(range(len(per_seed[0])))
    return steps, np.mean(per_seed, axis=0)


def plot_merge(
    runs: list[dict[str, Any]], names: list[str], results: dict[str, Any], path: Path
) -> None:
    """One panel per learned merge with its weights over steps (mean over seeds), and one with
    each run's FD of the mean merge on the selection noise over steps, beside the selection FD
    of the best single snapshot."""
    learned = list(runs[0]["weights"])
    fig, axes = plt.subplots(1, len(learned) + 1, figsize=(5 * (len(learned) + 1), 4))
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, len(names)))
    for ax, method in zip(axes, learned, strict=False):
        steps, weights = _weights_over_steps(runs, method)
        for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
            ax.plot(steps, weights[:, i], color=colour, label=name)
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set_title(f"{method} weights (mean over seeds)")
        ax.set_xlabel("policy update")
        ax.legend(fontsize=7, ncol=2)
    fd_ax = axes[-1]
    for method, style in zip(learned, ("-", ":", "--"), strict=False):
        for run in runs:
            evals = [r for r in run["history"][method] if r["kind"] == "eval"]
            fd_ax.plot([r["step"] for r in evals], [r["fid"] for r in evals], style, marker=".",
                       label=f"{method}, seed {run['seed']}")  # fmt: skip
    best = min(results["selection_fid"].values())
    fd_ax.axhline(best, color="grey", linestyle="--", label="best single snapshot")
    fd_ax.set_title("FD of the mean merge, selection noise")
    fd_ax.set_xlabel("policy update")
    fd_ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
