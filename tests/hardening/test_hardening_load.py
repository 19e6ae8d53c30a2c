"""The load benchmark (``make load``) at a small size: two processes on one Redis, trainers and
committers at once, zero errors, and the stored statistics equal to the recompute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.load import main

pytestmark = pytest.mark.redis


def test_a_short_load_run_passes_its_checks(tmp_path: Path) -> None:
    output = tmp_path / "load.json"
    status = main(
        [
            "--d",
            "16",
            "--pool",
            "400",
            "--groups",
            "4",
            "--group-size",
            "16",
            "--trainers",
            "4",
            "--committers",
            "2",
            "--commit-rows",
            "4",
            "--commit-interval",
            "0.2",
            "--duration",
            "4",
            "--max-requests",
            "400",
            # A rate and a rebuild share for so short a run at d = 16 say nothing: make load's do.
            "--min-commit-rate",
            "0",
            "--max-rebuild-share",
            "1",
            "--output",
            str(output),
        ]
    )
    result = json.loads(output.read_text())
    assert status == 0, result["checks"]
    assert result["errors"] == {} and 0 < result["requests"] <= 400
    assert result["commits"]["acknowledged"] == result["commits"]["applied"] > 0
    assert result["latency_seconds"]["p99"] >= result["latency_seconds"]["p50"] > 0
