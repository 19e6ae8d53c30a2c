"""Pieces of the digits merge demo with closed-form answers: baselines and the acceptance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from examples.digits.merge_demo import baseline_weights, snapshot_iterations
from examples.digits.merge_report import BASELINES, acceptance
from examples.digits.report import spread
from reward_client.merging.merge import Snapshots


def test_baseline_weights_closed_forms() -> None:
    weights = baseline_weights([500, 1000, 1500], ema=0.999)
    assert weights["last"].tolist() == [0.0, 0.0, 1.0]
    assert weights["uniform"].tolist() == pytest.approx([1 / 3] * 3)
    raw = np.array([0.999**1000, 0.999**500, 1.0])
    assert weights["ema_style"] == pytest.approx(raw / raw.sum())


def test_snapshot_iterations_come_from_the_file_names(tmp_path: Path) -> None:
    state = {"w": torch.zeros(2)}
    for it in (4000, 500):
        torch.save(state, tmp_path / f"iter{it:06d}.pt")
    assert snapshot_iterations(Snapshots.from_dir(tmp_path)) == [500, 4000]
    with pytest.raises(ValueError, match="iter000500"):
        snapshot_iterations(Snapshots([state]))


def test_acceptance_compares_means_and_counts_seeds() -> None:
    fid = {name: spread([10.0, 12.0, 14.0]) for name in BASELINES}
    fid["learned"] = spread([9.0, 13.0, 13.0])  # mean 11.67 < 12, wins on 2 of 3 seeds
    verdict = acceptance(fid, "learned")
    assert verdict["below_every_baseline_mean"]
    assert set(verdict["seeds_below_baseline"].values()) == {2}
    fid["uniform"] = spread([11.0, 11.0, 11.0])
    assert not acceptance(fid, "learned")["below_every_baseline_mean"]
