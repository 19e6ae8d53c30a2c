"""Evaluation of a generator on a fixed set of ODE samples: FID (via the service), diversity,
and for a class-conditional generator each class's FID and how often it draws the asked class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reward_client import RewardClient
from reward_client.features import FeatureSpace
from reward_client.training.sde import sample_ode

from .data import SHAPE
from .features import cnn_feature_space
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

    A class-conditional policy draws sample i of class ``labels[i]``; then also ``fid_class<c>``
    (the FD of class c's samples to the real digits of class c, the target of
    ``class_references[c]``), their mean ``fid_class_mean``, and ``class_accuracy`` (the share
    of samples the CNN assigns to the class they were drawn for).
    """

    cnn: FeatureCNN
    real_features: np.ndarray
    noise: torch.Tensor
    steps: int
    client: RewardClient
    reference: str
    labels: torch.Tensor | None = None
    class_references: tuple[str, ...] = ()

    @torch.no_grad()
    def samples(self, policy: nn.Module, count: int | None = None) -> torch.Tensor:
        """ODE samples of the first ``count`` noises (all by default)."""
        labels = None if self.labels is None else self.labels[:count]
        return sample_ode(policy, self.noise[:count], self.steps, labels)

    @torch.no_grad()
    def __call__(self, policy: nn.Module) -> dict[str, float]:
        features = self.cnn.features(self.samples(policy))
        logits = self.cnn.head(features)
        feats = features.double().numpy()
        space = cnn_feature_space(self.cnn)
        metrics = {
            "fid": self.client.fd(self.reference, feats, feature_space=space).fd,
            "class_entropy": class_entropy(logits),
            "coverage": coverage(self.real_features, feats),
            "confidence": float(logits.softmax(dim=1).amax(dim=1).mean()),
        }
        if self.labels is not None:
            metrics.update(self._per_class(feats, logits, self.labels, space))
        return metrics

    def _per_class(
        self, feats: np.ndarray, logits: torch.Tensor, labels: torch.Tensor, space: FeatureSpace
    ) -> dict[str, float]:
        mine = labels.numpy()
        fids = [
            self.client.fd(name, feats[mine == c], feature_space=space).fd
            for c, name in enumerate(self.class_references)
        ]
        return {
            **{f"fid_class{c}": fid for c, fid in enumerate(fids)},
            "fid_class_mean": float(np.mean(fids)),
            "class_accuracy": float((logits.argmax(dim=1) == labels).double().mean()),
        }
