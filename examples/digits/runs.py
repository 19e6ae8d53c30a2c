"""One fine-tuning run: a reward kind and a seed, against the reward service.

Each run gets its own reference (``digits-<kind>-seed<seed>``: the real-digit target and the
base pool), so parallel runs roll separate pools. The distribution-wise run takes group rewards
from that reference; the credits runs take per-sample credits and commit a quarter of every
request in it (with ``lag_rows``, that many of each step's newest rows a step late), or nothing
(the stalled pool); the leave-one-out run takes each sample's marginal effect on its group's
reward, committing like the credits run; the per-sample run rewards each sample with the feature
CNN's top-class probability and uses the reference only for evaluation. The 4-rank credits run
is :mod:`.ranks`'s.

Class-conditional (``config.classes > 0``): the trainer normalises every reward per class (each
sample against the other samples of its class in the batch, flow_grpo's per-prompt
normalisation) and the group-reward run commits a quarter of every request too; the evaluation
adds each class's FID against the real digits of that class (references ``digits-class<c>``,
:func:`upload_class_targets`). Unconditional: advantages as each source gives them (credits
within each group), and the group-reward run commits its first group every step.
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
    LeaveOneOutCredits,
    PerSampleRewards,
    RewardSource,
    ServiceRewards,
)

from .base import Base, load_base
from .config import DemoConfig
from .data import SHAPE, balanced_labels, load
from .evaluation import Evaluator, fixed_noise
from .features import cnn_feature_space
from .models import FeatureCNN
from .service import Endpoint

__all__ = [
    "SAMPLES",
    "class_reference",
    "confidence_reward",
    "evaluator_for",
    "reference_of",
    "run_dir",
    "run_one",
    "source_for",
    "upload_class_targets",
    "upload_reference",
]

SAMPLES = "samples.npy"


def run_dir(config: DemoConfig, kind: str, seed: int) -> Path:
    """Where a run keeps its checkpoint, metrics and final samples."""
    return config.out / "runs" / f"{kind}-seed{seed}"


def upload_reference(client: RewardClient, name: str, base: Base, pool: np.ndarray) -> None:
    """Create reference ``name`` in the CNN's feature space: target fitted to the real features,
    pool = ``pool``."""
    space = cnn_feature_space(base.cnn)
    client.put_target(name, features=base.real_features, feature_space=space)
    client.put_pool(name, pool, feature_space=space)


def class_reference(label: int) -> str:
    """The reference whose target is the real digits of class ``label``."""
    return f"digits-class{label}"


def upload_class_targets(client: RewardClient, base: Base, classes: int) -> None:
    """Create :func:`class_reference` ``c`` for every class: the target fitted to the real
    features of digit c (no pool: they only evaluate FID)."""
    labels = load()[1].numpy()
    space = cnn_feature_space(base.cnn)
    for c in range(classes):
        real = base.real_features[labels == c]
        client.put_target(class_reference(c), features=real, feature_space=space)


def confidence_reward(cnn: FeatureCNN) -> PerSampleRewards:
    """Per-sample reward ``max_c softmax(head(features))_c``: the classifier's confidence."""

    @torch.no_grad()
    def reward(features: np.ndarray) -> np.ndarray:
        logits = cnn.head(torch.as_tensor(features, dtype=torch.float32))
        return logits.softmax(dim=1).amax(dim=1).double().numpy()

    return PerSampleRewards(reward)


def source_for(
    kind: str,
    client: RewardClient,
    reference: str,
    base: Base,
    conditional: bool = False,
    lag_rows: int = 0,
) -> RewardSource:
    """The reward source of a run of ``kind`` (one of :data:`~.config.KINDS` but the 4-rank
    run, whose ranks make their own); a credits run's pool lags by ``lag_rows`` rows."""
    if kind == "distribution":
        share = COMMIT_FRACTION if conditional else None
        return ServiceRewards(client, reference, commit_fraction=share, run=reference)
    if kind == "per_sample":
        return confidence_reward(base.cnn)
    if kind in ("credits", "credits_stalled"):
        share = COMMIT_FRACTION if kind == "credits" else None
        return CreditRewards(
            client, reference, commit_fraction=share, run=reference, lag_rows=lag_rows
        )
    if kind == "loo_credits":
        return LeaveOneOutCredits(client, reference, commit_fraction=COMMIT_FRACTION, run=reference)
    raise ValueError(f"unknown reward kind {kind!r}")


def evaluator_for(
    config: DemoConfig, base: Base, client: RewardClient, reference: str
) -> Evaluator:
    """The demo's evaluation: ``eval_size`` ODE samples (the sampler's steps) from noise
    ``eval_seed``, FID against ``reference``'s target; a conditional flow's samples hold every
    class equally often, and each class's FID is taken too."""
    noise = fixed_noise(config.eval_size, config.eval_seed)
    steps = config.worker.sde.steps
    labels = balanced_labels(config.eval_size, config.classes)
    classes = tuple(class_reference(c) for c in range(config.classes))
    return Evaluator(base.cnn, base.real_features, noise, steps, client, reference, labels, classes)


def reference_of(kind: str, seed: int) -> str:
    """The reference a run of ``kind`` and ``seed`` rolls (and names its rounds after)."""
    return f"digits-{kind.replace('_', '-')}-seed{seed}"


def run_one(config: DemoConfig, endpoint: Endpoint, kind: str, seed: int) -> dict[str, Any]:
    """Fine-tune a copy of the base flow with reward ``kind`` in this process; returns the
    run's history (the 4-rank run is :func:`~.ranks.run_ranks`)."""
    start = time.perf_counter()
    base = load_base(config)
    out = run_dir(config, kind, seed)
    if not config.resume:
        shutil.rmtree(out, ignore_errors=True)
    reference = reference_of(kind, seed)
    policy = copy.deepcopy(base.flow).requires_grad_(True)
    with endpoint.client(cnn_feature_space(base.cnn)) as client:
        upload_reference(client, reference, base, base.pool(config))
        conditional = config.classes > 0
        source = source_for(kind, client, reference, base, conditional, config.lag_rows)
        evaluator = evaluator_for(config, base, client, reference)
        worker_config = dataclasses.replace(
            config.worker, seed=seed, out_dir=out, classes=config.classes
        )
        worker = TrainerWorker(policy, base.cnn.features, SHAPE, source, worker_config, evaluator)
        history = worker.run()
        np.save(out / SAMPLES, evaluator.samples(policy, config.grid).numpy())
    return {
        "kind": kind,
        "seed": seed,
        "history": history,
        "seconds": time.perf_counter() - start,
    }
