"""Toy models with known answers, shared by the trainer tests (and the torchrun test's setup).

Gaussian data ``x1 ~ N(m, diag(sigma^2))`` with noise ``x0 ~ N(0, I)``: the marginal of
``x_t = (1 - t) x0 + t x1`` is ``N(t m, diag((1 - t)^2 + t^2 sigma^2))`` and the exact
flow-matching velocity is ``E[x1 - x0 | x_t = x] = m + (t sigma^2 - (1 - t)) / var_t (x - t m)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from reward_client.grpo.worker import TrainSetup
from reward_client.training.sources import Scores


class GaussianVelocity(nn.Module):
    """Exact velocity of Gaussian data with mean ``mean`` and standard deviations ``std``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def marginal_var(self, t: torch.Tensor) -> torch.Tensor:
        """``(1 - t)^2 + t^2 sigma^2`` per dimension."""
        return (1 - t) ** 2 + t**2 * self.std**2

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tb = t[:, None]
        gain = (tb * self.std**2 - (1 - tb)) / self.marginal_var(tb)
        return self.mean + gain * (x - tb * self.mean)


class AffineVelocity(nn.Module):
    """A trainable velocity ``v = W x + b + c t`` on flat vectors (deterministic, tiny)."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(dim, dim)
        self.time = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + t[:, None] * self.time


class ConditionalAffine(AffineVelocity):
    """``v = W x + b + c t + e[label]``: an affine velocity with a learned shift per class; it
    keeps the labels of every call (``calls``) so tests can see what it was conditioned on."""

    def __init__(self, dim: int, classes: int, seed: int = 0) -> None:
        super().__init__(dim, seed)
        self.shift = nn.Embedding(classes, dim)
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        self.calls.append(labels.clone())
        return super().forward(x, t) + self.shift(labels)


class MeanReward:
    """Deterministic per-group reward ``-|mean of group - target|^2`` (a stand-in for FD)."""

    def __init__(self, target: float = 1.0) -> None:
        self.target = target
        self.commits: list[np.ndarray] = []

    def score(self, features: np.ndarray, seed: int, *, step: int | None = None) -> Scores:
        rewards = -((features.mean(axis=1) - self.target) ** 2).sum(axis=1)
        adv = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
        size = features.shape[1]
        return Scores(
            rewards=np.repeat(rewards[:, None], size, axis=1),
            advantages=np.repeat(adv[:, None], size, axis=1),
            info={"seed": float(seed)},
        )

    def commit(self, features: np.ndarray) -> None:
        self.commits.append(features.copy())


def build() -> TrainSetup:
    """Setup for ``python -m reward_client.grpo.train --setup toy:build``: a 4-d affine flow."""
    return TrainSetup(policy=AffineVelocity(4), featurize=nn.Identity(), sample_shape=(4,))
