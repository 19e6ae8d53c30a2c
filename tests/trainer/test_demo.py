"""The digits demo end to end, shrunk: tiny base networks, two steps, one seed per reward."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from examples.digits.config import DemoConfig
from examples.digits.demo import parse_args, run_demo
from examples.digits.pretrain import ClassifierConfig, FlowConfig

pytestmark = pytest.mark.slow

REQUIRED = [
    "fid_base",
    "fid_final",
    "class_entropy_base",
    "class_entropy_final",
    "coverage_base",
    "coverage_final",
    "seeds",
    "steps",
    "wall_seconds",
]


def test_demo_writes_results_and_plots(tmp_path: Path) -> None:
    default = DemoConfig()
    config = dataclasses.replace(
        default,
        out=tmp_path / "demo",
        cache=tmp_path / "cache",
        seeds=(0,),
        pool_size=300,
        eval_size=300,
        grid=16,
        classifier=ClassifierConfig(epochs=1),
        flow=FlowConfig(iters=40, snapshots=2),
        worker=dataclasses.replace(
            default.worker, steps=2, groups=4, group_size=16, eval_every=1
        ),
    )
    results = run_demo(config)
    written = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert written == json.loads(json.dumps(results))
    for key in REQUIRED:
        assert key in written
    for kind in ("per_sample", "credits", "credits_stalled"):
        for key in ("fid_final", "class_entropy_final", "coverage_final"):
            assert key in written[kind]
    # Credits commit a share of every request: the pool moves; the stalled run's never does.
    assert written["credits"]["freshness"]["mean"] > 0.0
    assert written["credits_stalled"]["freshness"]["per_seed"] == [0.0]
    assert written["per_sample"]["freshness"] is None
    assert written["spread"]["fid_final"]["per_seed"] == [written["fid_final"]]
    assert written["steps"] == 2 and written["seeds"] == [0]
    for png in ("samples.png", "curves.png"):
        assert (tmp_path / "demo" / png).stat().st_size > 0
    assert len(list((tmp_path / "cache").glob("flow-*/snapshots/*.pt"))) == 2


def test_command_line_overrides_the_defaults() -> None:
    config = parse_args(["--seeds", "4", "5", "--steps", "7", "--jobs", "1", "--lr", "2e-5"])
    assert config.seeds == (4, 5)
    assert config.jobs == 1
    assert config.worker.steps == 7 and config.worker.lr == 2e-5
