"""Reward sources for trainer workers: what a worker needs from "something that scores samples".

A source turns features of G groups of K samples into per-sample rewards and advantages, and
optionally rolls a pool with accepted samples. Two kinds:

* :class:`ServiceRewards` — distribution-wise rewards from the reward service: each group's
  reward is ``FD_0 - FD_I(group)`` and its advantage (normalised over the request's groups by
  the service) is shared by the group's K samples. ``commit`` rolls the service's pool.
* :class:`PerSampleRewards` — a per-sample reward ``r_i = f(features_i)`` with the advantage
  ``(r_i - mean r) / (std r + 1e-8)`` over the whole batch; there is no pool to roll.

numpy only: the worker converts tensors at its boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .._client import RewardClient
from .._types import Mode

__all__ = ["PerSampleRewards", "RewardSource", "Scores", "ServiceRewards", "normalise"]


@dataclass(frozen=True)
class Scores:
    """Rewards and advantages of a (G, K) batch of samples.

    Attributes:
        rewards: (G, K) float64; a group-level reward is repeated over its K samples.
        advantages: (G, K) float64.
        info: scalars worth logging (e.g. ``base_fd``, ``version``).
    """

    rewards: np.ndarray
    advantages: np.ndarray
    info: dict[str, float] = field(default_factory=dict)


class RewardSource(Protocol):
    """What a trainer worker asks of a reward provider."""

    def score(self, features: np.ndarray, seed: int) -> Scores:
        """Score features (G, K, d); ``seed`` makes any randomness reproducible."""
        ...

    def commit(self, features: np.ndarray) -> None:
        """Roll accepted features (n, d) into the pool, if the source keeps one."""
        ...


def normalise(rewards: np.ndarray) -> np.ndarray:
    """Advantages ``(r - mean r) / (std r + 1e-8)`` over all entries (std with ddof 0)."""
    r = np.asarray(rewards, dtype=np.float64)
    advantages: np.ndarray = (r - r.mean()) / (r.std() + 1e-8)
    return advantages


@dataclass
class ServiceRewards:
    """Distribution-wise rewards from the reward service for reference ``reference``.

    ``mode`` is the service's row-replacement mode; ``"shared"`` (common random rows for all
    groups of a request) keeps the groups' rewards comparable.
    """

    client: RewardClient
    reference: str
    mode: Mode = "shared"

    def score(self, features: np.ndarray, seed: int) -> Scores:
        """Post the groups (G, K, d); broadcast each group's reward and advantage over K."""
        size = features.shape[1]
        batch = self.client.rewards(self.reference, features, mode=self.mode, seed=seed)
        rewards = np.repeat(np.asarray(batch.rewards, np.float64)[:, None], size, axis=1)
        advantages = np.repeat(np.asarray(batch.advantages, np.float64)[:, None], size, axis=1)
        info = {"base_fd": float(batch.base_fd), "version": float(batch.version)}
        return Scores(rewards=rewards, advantages=advantages, info=info)

    def commit(self, features: np.ndarray) -> None:
        """Replace the oldest pool rows by ``features`` (n, d)."""
        self.client.commit(self.reference, features)


@dataclass
class PerSampleRewards:
    """Per-sample rewards ``fn(features (n, d)) -> (n,)``, advantages normalised over the batch."""

    fn: Callable[[np.ndarray], np.ndarray]

    def score(self, features: np.ndarray, seed: int) -> Scores:
        """Score every sample alone; ``seed`` is unused (the reward is deterministic)."""
        groups, size, d = features.shape
        rewards = np.asarray(self.fn(features.reshape(groups * size, d)), np.float64)
        rewards = rewards.reshape(groups, size)
        return Scores(rewards=rewards, advantages=normalise(rewards))

    def commit(self, features: np.ndarray) -> None:
        """A per-sample reward keeps no pool: nothing to roll."""
