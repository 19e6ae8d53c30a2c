"""The merge trainer and its command line against a real reward-service process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from merge_toy import DIM, LinearVelocity, checkpoints
from torch import nn

from examples.digits.service import Endpoint
from reward_client.merging.merge import Snapshots
from reward_client.merging.policy import PolicyConfig
from reward_client.merging.trainer import MergeConfig, MergeTrainer
from reward_client.training.sde import sample_ode
from reward_client.training.sources import ServiceRewards

pytestmark = pytest.mark.slow

STEPS, CANDIDATES, SIZE = 3, 4, 16


def _make_reference(endpoint: Endpoint, name: str) -> int:
    """Target: N(1, I) features; pool: ODE samples of the uniform merge. Returns the version."""
    model = LinearVelocity()
    model.load_state_dict({k: sum(s[k] for s in checkpoints()) / 3 for k in checkpoints()[0]})
    pool = sample_ode(model, torch.randn(128, DIM, generator=torch.Generator().manual_seed(0)), 4)
    with endpoint.client() as client:
        real = np.random.default_rng(0).normal(1.0, 1.0, (512, DIM))
        client.put_target(name, features=real, accept_unknown_feature_space=True)
        return client.put_pool(name, pool.numpy()).version


def test_merge_trainer_runs_against_the_service(service: Endpoint) -> None:
    version = _make_reference(service, "merge-toy")
    config = MergeConfig(
        steps=STEPS, candidates=CANDIDATES, group_size=SIZE, ode_steps=4, eval_every=0,
        progress=False, policy=PolicyConfig(kind="affine"),
    )  # fmt: skip
    with service.client() as client:
        trainer = MergeTrainer(
            LinearVelocity(), Snapshots(checkpoints()), nn.Identity(), (DIM,),
            ServiceRewards(client, "merge-toy", mode="shared"), config,
        )  # fmt: skip
        history = trainer.run()
        assert client.info("merge-toy").version == version + STEPS  # one commit a step
    assert [r["step"] for r in history] == [1, 2, 3]
    assert [r["version"] for r in history] == [version, version + 1, version + 2]
    assert all(np.isfinite(r["reward_mean"]) and r["reward_std"] > 0 for r in history)
    assert abs(sum(history[-1]["weights"]) - 1.0) < 1e-9


def test_merge_cli_trains_saves_and_resumes(service: Endpoint, tmp_path: Path) -> None:
    _make_reference(service, "merge-cli")
    env = {
        **os.environ,
        "DISTREWARD_TOKEN": service.token,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
    }

    def cli(steps: int) -> None:
        command = [
            sys.executable, "-m", "reward_client.merging.train", "--setup", "merge_toy:build",
            "--url", service.url, "--reference", "merge-cli", "--out", str(tmp_path),
            "--steps", str(steps), "--candidates", str(CANDIDATES), "--group-size", str(SIZE),
            "--ode-steps", "4", "--kind", "simplex", "--threads", "1", "--no-progress",
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]

    cli(2)
    cli(STEPS)  # resumes at step 2
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == STEPS
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    weights = json.loads((tmp_path / "weights.json").read_text())
    assert weights["step"] == STEPS and len(weights["weights"]) == 3
    assert all(w > 0 for w in weights["weights"]) and abs(sum(weights["weights"]) - 1) < 1e-9
