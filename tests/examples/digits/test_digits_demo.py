"""The digits demo end to end, shrunk: tiny base networks, two steps, one seed per reward; the
class-conditional demo with every reward kind, and the unconditional one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from examples.digits.config import DEMO_KINDS, KINDS, DemoConfig
from examples.digits.demo import parse_args, run_demo
from examples.digits.pretrain import ClassifierConfig, FlowConfig

pytestmark = pytest.mark.slow

BASE = ("fid", "class_entropy", "coverage", "confidence")
PER_CLASS = ("fid_class_mean", "class_accuracy", *(f"fid_class{c}" for c in range(10)))


def _tiny(default: DemoConfig, root: Path, kinds: tuple[str, ...], **worker: int) -> DemoConfig:
    # Two steps, evaluated at the start and the end; the cost is mostly starting processes.
    return dataclasses.replace(
        default,
        out=root / "demo",
        cache=root / "cache",
        seeds=(0,),
        kinds=kinds,
        pool_size=300,
        eval_size=300,
        grid=16,
        classifier=ClassifierConfig(epochs=1),
        flow=FlowConfig(iters=40, snapshots=2),
        worker=dataclasses.replace(default.worker, steps=2, eval_every=2, **worker),
    )


def _written(config: DemoConfig) -> dict:
    results = run_demo(config)
    written = json.loads((config.out / "results.json").read_text())
    assert written == json.loads(json.dumps(results))
    for png in ("samples.png", "curves.png"):
        assert (config.out / png).stat().st_size > 0
    assert written["steps"] == 2 and written["seeds"] == [0]
    return written


def test_class_conditional_demo_reports_every_kind_with_per_class_fid(tmp_path: Path) -> None:
    # Twenty groups of two: two groups a class, the smallest batch leave-one-out credit works
    # on, split into 5 groups a rank for the 4-rank run.
    written = _written(_tiny(DemoConfig(), tmp_path, KINDS, groups=20, group_size=2))
    assert written["conditional"] is True
    for metric in (*BASE, *PER_CLASS):
        assert f"{metric}_base" in written
        for kind in KINDS:
            final = written[kind]["spread"][f"{metric}_final"]
            assert final["per_seed"] == [written[kind][f"{metric}_final"]]
    per_class = [written["credits"][f"fid_class{c}_final"] for c in range(10)]
    assert written["credits"]["fid_class_mean_final"] == pytest.approx(sum(per_class) / 10)
    # Every distribution-wise run but the stalled one commits a share of each request.
    for kind in ("distribution", "credits", "credits_4ranks", "loo_credits"):
        assert written[kind]["freshness"]["mean"] > 0.0
    assert written["credits_stalled"]["freshness"]["per_seed"] == [0.0]
    assert written["per_sample"]["freshness"] is None
    for check in ("credits_fid_at_least_30pct_below_base", "stalled_fid_above_base"):
        assert isinstance(written["acceptance"][check], bool)
    assert len(list((tmp_path / "cache").glob("flow-*/snapshots/*.pt"))) == 2


def test_unconditional_demo_reports_the_kinds_it_ran(tmp_path: Path) -> None:
    kinds = ("distribution", "credits_stalled")
    config = _tiny(DemoConfig().unconditional(), tmp_path, kinds, groups=4, group_size=16)
    written = _written(config)
    assert written["conditional"] is False
    assert "fid_class_mean_base" not in written and "credits" not in written
    # The group-reward run commits its first group a step (one version each), not in requests.
    log = config.out / "runs" / "distribution-seed0" / "metrics.jsonl"
    history = [json.loads(line) for line in log.read_text().splitlines()]
    versions = [r["version"] for r in history if r["kind"] == "train"]
    assert versions[1] == versions[0] + 1
    assert written["credits_stalled"]["freshness"]["per_seed"] == [0.0]
    assert set(written["acceptance"]) == {
        "stalled_fid_above_base",
        "distribution_fid_below_base",
        "distribution_seeds_fid_below_base",
        "distribution_class_entropy_within_10pct",
        "distribution_coverage_within_10pct",
    }


def test_command_line_overrides_the_defaults() -> None:
    config = parse_args(["--seeds", "4", "5", "--steps", "7", "--jobs", "1", "--lr", "2e-5"])
    assert config.seeds == (4, 5)
    assert config.jobs == 1
    assert config.worker.steps == 7 and config.worker.lr == 2e-5
    assert config.classes == 10 and config.kinds == DEMO_KINDS
    assert config.worker.groups % config.classes == 0  # every class equally often a step
    plain = parse_args(["--unconditional", "--kinds", "credits", "loo_credits", "credits"])
    assert plain.classes == 0 and plain.kinds == ("credits", "loo_credits")
    assert plain.worker.steps == 200 and plain.pool_size == 2000
