"""Evaluation of a generator on a fixed set of ODE samples: FID (via the service), diversity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reward_client import RewardClient
from reward_client.training.sde import sample_ode

from .data import SHAPE
from .metrics import class_entropy, coverage
from .models import FeatureCNN

__all__ = ["Evaluator", "fixed_noise"]


def fixed_noise(count: int, seed: int) -> torch.Tensor:
    """``count`` standard-normal images drawn from ``seed``: the same set on every call."""
    return torch.randn((count, *SHAPE), generator=torch.Generator().manual_seed(seed))


@dataclass
class Evaluator:
    """Scores a velocity model by its ODE samples from ``noise``.

    Returns ``fid`` (the service's float64 FD of the samples' features to the real-digit target
    of ``reference``), ``class_entropy`` and ``coverage`` (see :mod:`.metrics`), and
    ``confidence`` (mean top-class probability: the per-sample reward).
    """

    cnn: FeatureCNN
    real_features: np.ndarray
    noise: torch.Tensor
    steps: int
    client: RewardClient
    reference: str

    @torch.no_grad()
    def samples(self, policy: nn.Module, count: int | None = None) -> torch.Tensor:
        """ODE samples of the first ``count`` noises (all by default)."""
        return sample_ode(policy, self.noise[:count], self.steps)

    @torch.no_grad()
    def __call__(self, policy: nn.Module) -> dict[str, float]:
        features = self.cnn.features(self.samples(policy))
        logits = self.cnn.head(features)
        feats = features.double().numpy()
        return {
            "fid": self.client.fd(self.reference, feats).fd,
            "class_entropy": class_entropy(logits),
            "coverage": coverage(self.real_features, feats),
            "confidence": float(logits.softmax(dim=1).amax(dim=1).mean()),
        }
