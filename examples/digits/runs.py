"""One fine-tuning run: a reward kind and a seed, against the reward service.

Each run gets its own reference (``digits-<kind>-seed<seed>``: the real-digit target and the
base pool), so parallel runs roll separate pools. The distribution-wise run takes group rewards
from that reference and commits one group a step; the credits runs take per-sample credits
(advantages normalised within each group, as per-prompt trainers do) and commit a quarter of
every request in it, or nothing (the stalled pool); the per-sample run rewards each sample with
the feature CNN's top-class probability and uses the reference only for evaluation.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reward_client import COMMIT_FRACTION, RewardClient
from reward_client.grpo.worker import TrainerWorker
from reward_client.training.sources import (
    CreditRewards,
    PerSampleRewards,
    RewardSource,
    ServiceRewards,
)

from .base import Base, load_base
from .config import DemoConfig
from .data import SHAPE
from .evaluation import Evaluator, fixed_noise
from .models import FeatureCNN
from .service import Endpoint

__all__ = [
    "SAMPLES",
    "confidence_reward",
    "evaluator_for",
    "run_dir",
    "run_one",
    "source_for",
    "upload_reference",
]

SAMPLES = "samples.npy"


def run_dir(config: DemoConfig, kind: str, seed: int) -> Path:
    """Where a run keeps its checkpoint, metrics and final samples."""
    return config.out / "runs" / f"{kind}-seed{seed}"


def upload_reference(client: RewardClient, name: str, base: Base, pool: np.ndarray) -> None:
    """Create reference ``name``: target fitted to the real features, pool = ``pool``."""
    client.put_target(name, features=base.real_features)
    client.put_pool(name, pool)


def confidence_reward(cnn: FeatureCNN) -> PerSampleRewards:
    """Per-sample reward ``max_c softmax(head(features))_c``: the classifier's confidence."""

    @torch.no_grad()
    def reward(features: np.ndarray) -> np.ndarray:
        logits = cnn.head(torch.as_tensor(features, dtype=torch.float32))
        return logits.softmax(dim=1).amax(dim=1).double().numpy()

    return PerSampleRewards(reward)


def source_for(kind: str, client: RewardClient, reference: str, base: Base) -> RewardSource:
    """The reward source of a run of ``kind`` (one of :data:`~.config.KINDS`)."""
    if kind == "distribution":
        return ServiceRewards(client, reference)
    if kind == "per_sample":
        return confidence_reward(base.cnn)
    if kind in ("credits", "credits_stalled"):
        share = COMMIT_FRACTION if kind == "credits" else None
        return CreditRewards(client, reference, commit_fraction=share, run=reference)
    raise ValueError(f"unknown reward kind {kind!r}")


def evaluator_for(
    config: DemoConfig, base: Base, client: RewardClient, reference: str
) -> Evaluator:
    """The demo's evaluation: ``eval_size`` ODE samples (the sampler's steps) from noise
    ``eval_seed``, FID against ``reference``'s target."""
    noise = fixed_noise(config.eval_size, config.eval_seed)
    steps = config.worker.sde.steps
    return Evaluator(base.cnn, base.real_features, noise, steps, client, reference)


def run_one(config: DemoConfig, endpoint: Endpoint, kind: str, seed: int) -> dict[str, Any]:
    """Fine-tune a copy of the base flow with reward ``kind``; returns the run's history."""
    start = time.perf_counter()
    base = load_base(config)
    out = run_dir(config, kind, seed)
    if not config.resume:
        shutil.rmtree(out, ignore_errors=True)
    reference = f"digits-{kind.replace('_', '-')}-seed{seed}"
    policy = copy.deepcopy(base.flow).requires_grad_(True)
    with endpoint.client() as client:
        upload_reference(client, reference, base, base.pool(config))
        source = source_for(kind, client, reference, base)
        evaluator = evaluator_for(config, base, client, reference)
        worker_config = dataclasses.replace(config.worker, seed=seed, out_dir=out)
        worker = TrainerWorker(policy, base.cnn.features, SHAPE, source, worker_config, evaluator)
        history = worker.run()
        np.save(out / SAMPLES, evaluator.samples(policy, config.grid).numpy())
    return {
        "kind": kind,
        "seed": seed,
        "history": history,
        "seconds": time.perf_counter() - start,
    }
