"""Workers against a real service process: one worker, two at once, and two torchrun ranks;
leave-one-out credits against a from-scratch recompute of every modified pool."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from trainer_toy import AffineVelocity

from examples.digits.service import Endpoint
from reward_client.grpo.worker import TrainerWorker, WorkerConfig
from reward_client.training.sde import SDEConfig, sample_sde
from reward_client.training.sources import LeaveOneOutCredits, ServiceRewards
from reward_service.engine import frechet_distance

pytestmark = pytest.mark.slow

DIM, STEPS, GROUPS, SIZE = 4, 3, 4, 8


def _make_reference(endpoint: Endpoint, name: str) -> int:
    """Target: N(1, I) features; pool: samples of the untrained toy policy. Returns the version."""
    rng = np.random.default_rng(0)
    pool = sample_sde(AffineVelocity(DIM), torch.randn(256, DIM), SDEConfig(steps=4)).samples
    with endpoint.client() as client:
        real = rng.normal(1.0, 1.0, size=(512, DIM))
        client.put_target(name, features=real, accept_unknown_feature_space=True)
        return client.put_pool(name, pool.numpy()).version


def _config(seed: int) -> WorkerConfig:
    return WorkerConfig(
        steps=STEPS,
        groups=GROUPS,
        group_size=SIZE,
        lr=1e-2,
        eval_every=0,
        checkpoint_every=0,
        seed=seed,
        progress=False,
        sde=SDEConfig(steps=4),
    )


def _run_worker(endpoint: Endpoint, name: str, seed: int) -> list[dict]:
    with endpoint.client() as client:
        worker = TrainerWorker(
            AffineVelocity(DIM, seed),
            nn.Identity(),
            (DIM,),
            ServiceRewards(client, name),
            _config(seed),
        )
        return worker.run()


def test_worker_trains_against_the_service(service: Endpoint) -> None:
    version = _make_reference(service, "toy-one")
    history = _run_worker(service, "toy-one", seed=0)
    assert [r["step"] for r in history] == [1, 2, 3]
    assert all(np.isfinite(r["reward_mean"]) and np.isfinite(r["base_fd"]) for r in history)
    # Every step's rewards were computed on the pool version its predecessors' commits left.
    assert [r["version"] for r in history] == [version, version + 1, version + 2]
    with service.client() as client:
        assert client.info("toy-one").version == version + STEPS


def test_two_workers_share_one_service(service: Endpoint) -> None:
    version = _make_reference(service, "toy-two")
    histories: dict[int, list[dict]] = {}

    def work(seed: int) -> None:
        histories[seed] = _run_worker(service, "toy-two", seed)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(histories) == [1, 2]
    assert all(len(h) == STEPS for h in histories.values())
    with service.client() as client:
        assert client.info("toy-two").version == version + 2 * STEPS


def test_torchrun_ranks_train_with_ddp(service: Endpoint, tmp_path: Path) -> None:
    version = _make_reference(service, "toy-ddp")
    setup_dir = Path(inspect.getfile(AffineVelocity)).parent  # the ranks import trainer_toy
    env = {
        **os.environ,
        "DISTREWARD_TOKEN": service.token,
        "PYTHONPATH": os.pathsep.join([str(setup_dir), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--standalone", "-m", "reward_client.grpo.train",
        "--setup", "trainer_toy:build", "--url", service.url, "--reference", "toy-ddp",
        "--steps", str(STEPS), "--groups", str(GROUPS), "--group-size", str(SIZE),
        "--sde-steps", "4", "--lr", "1e-2", "--out", str(tmp_path), "--threads", "1",
        "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == STEPS
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == STEPS
    # Both ranks committed one group per step.
    with service.client() as client:
        assert client.info("toy-ddp").version == version + 2 * STEPS


def test_leave_one_out_credits_match_a_recompute_of_each_modified_pool(service: Endpoint) -> None:
    rng = np.random.default_rng(3)
    d, n, groups, size = 5, 120, 3, 4
    # float32, as the features travel: the service and the recompute see the same values.
    target = rng.normal(0.5, 1.0, size=(300, d)).astype(np.float32).astype(np.float64)
    pool = rng.normal(0.0, 1.0, size=(n, d)).astype(np.float32).astype(np.float64)
    samples = rng.normal(0.3, 1.3, size=(groups, size, d)).astype(np.float32)
    mu, sigma = target.mean(0), np.cov(target, rowvar=False)

    def fd(rows: np.ndarray, rows_in: np.ndarray) -> float:
        modified = pool.copy()
        modified[rows] = rows_in
        return frechet_distance(modified.mean(0), np.cov(modified, rowvar=False), mu, sigma)

    with service.client() as client:
        client.put_target("toy-loo", features=target, accept_unknown_feature_space=True)
        version = client.put_pool("toy-loo", pool).version
        source = LeaveOneOutCredits(client, "toy-loo", commit_fraction=0.25, run="loo")
        rows = source.rows(11, size)
        scores = source.score(samples, seed=11)
        assert client.info("toy-loo").version == version + 1  # a quarter committed, once
    expected = np.array(
        [
            [fd(rows[:-1], np.delete(group, j, axis=0)) - fd(rows, group) for j in range(size)]
            for group in samples.astype(np.float64)
        ]
    )
    scale = max(1.0, fd(rows[:0], samples[0, :0]))
    np.testing.assert_allclose(scores.rewards, expected, rtol=0, atol=1e-9 * scale)
    assert scores.info["version"] == version
    for group in scores.advantages:  # normalised within each group
        assert abs(group.mean()) < 1e-12
