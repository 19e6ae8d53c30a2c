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


def acceptance(fid: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's criterion on the means over seeds, with per-seed win counts."""
    learned = fid["learned"]
    wins = {
        name: sum(a < b for a, b in zip(learned["per_seed"], fid[name]["per_seed"], strict=True))
        for name in BASELINES
    }
    return {
        "learned_below_every_baseline_mean": all(
            learned["mean"] < fid[name]["mean"] for name in BASELINES
        ),
        "learned_below_each_baseline_mean": {
            name: learned["mean"] < fid[name]["mean"] for name in BASELINES
        },
        "seeds_learned_below_baseline": wins,
    }


def write_merge_results(
    config: MergeDemoConfig,
    names: list[str],
    fixed: dict[str, np.ndarray],
    selection_fid: dict[str, float],
    runs: list[dict[str, Any]],
    wall_seconds: float,
) -> dict[str, Any]:
    """Assemble and write ``<out>/results.json``; returns it.

    ``fid[method]`` is the mean, std (ddof 0), min, max and per-seed values of that method's FID
    on the evaluation noise; ``snapshot_fid`` the same for every single snapshot (what an oracle
    choice on the evaluation set would see).
    """
    methods = [*BASELINES, "learned"]
    fid = {m: spread([r["fid"][m] for r in runs]) for m in methods}
    results = {
        "fid": fid,
        "acceptance": acceptance(fid),
        "snapshots": names,
        "learned_weights": {
            "mean": np.mean([r["weights"] for r in runs], axis=0).tolist(),
            "per_seed": [r["weights"] for r in runs],
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


def plot_merge(
    runs: list[dict[str, Any]], names: list[str], results: dict[str, Any], path: Path
) -> None:
    """Left: the mean merge's weights over steps (mean over seeds). Right: its FD on the
    selection noise over steps, per seed, beside the selection FD of the best single snapshot."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    evals = [[r for r in run["history"] if r["kind"] == "eval"] for run in runs]
    trains = [[r for r in run["history"] if r["kind"] == "train"] for run in runs]
    steps = [0] + [r["step"] for r in trains[0]]
    first = next(r for r in evals[0] if r["step"] == 0)["weights"]
    weights = np.mean([[first] + [r["weights"] for r in t] for t in trains], axis=0)
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, len(names)))
    for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
        left.plot(steps, weights[:, i], color=colour, label=name)
    left.axhline(0.0, color="grey", linewidth=0.5)
    left.set_title("learned merge weights (mean over seeds)")
    left.set_xlabel("policy update")
    left.legend(fontsize=7, ncol=2)
    for run, ev in zip(runs, evals, strict=True):
        right.plot([r["step"] for r in ev], [r["fid"] for r in ev], marker="o",
                   label=f"learned, seed {run['seed']}")  # fmt: skip
    best = min(results["selection_fid"].values())
    right.axhline(best, color="grey", linestyle="--", label="best single snapshot")
    right.set_title("FD of the mean merge, selection noise (lower is better)")
    right.set_xlabel("policy update")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
