"""Toy pieces shared by the merge tests (and by the CLI test's ``--setup``).

A linear velocity ``v = W x + b`` on flat vectors; its "checkpoints" are random state dicts, so
merges are easy to check, and the identity is the feature map.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from reward_client.merging.merge import Snapshots
from reward_client.merging.trainer import MergeSetup
from reward_client.training.sources import Scores, normalise

DIM = 4


class LinearVelocity(nn.Module):
    """``v(x, t) = W x + b`` (the time is ignored): deterministic and tiny."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def checkpoints(count: int = 3, dim: int = DIM, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``count`` random state dicts of :class:`LinearVelocity` (checkpoint i has bias ``i``)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "linear.weight": 0.1 * torch.randn((dim, dim), generator=generator),
            "linear.bias": torch.full((dim,), float(i)),
        }
        for i in range(count)
    ]


class MeanTargetReward:
    """Per-group reward ``-|mean of the group's features - target|^2``: a stand-in for FD."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.commits = 0

    def score(self, features: np.ndarray, seed: int) -> Scores:
        rewards = -((features.mean(axis=1) - self.target) ** 2).sum(axis=1)
        size = features.shape[1]
        return Scores(
            rewards=np.repeat(rewards[:, None], size, axis=1),
            advantages=np.repeat(normalise(rewards)[:, None], size, axis=1),
        )

    def commit(self, features: np.ndarray) -> None:
        self.commits += 1


def build() -> MergeSetup:
    """``--setup merge_toy:build`` for ``python -m reward_client.merging.train``."""
    return MergeSetup(
        model=LinearVelocity(), snapshots=Snapshots(checkpoints()), featurize=nn.Identity(),
        sample_shape=(DIM,),
    )  # fmt: skip
