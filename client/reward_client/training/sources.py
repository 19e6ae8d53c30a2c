"""Reward sources for trainer workers: what a worker needs from "something that scores samples".

A source turns features of G groups of K samples into per-sample rewards and advantages, and
optionally rolls a pool with accepted samples. Three kinds:

* :class:`ServiceRewards` — distribution-wise rewards from the reward service: each group's
  reward is ``FD_0 - FD_I(group)`` and its advantage (normalised over the request's groups by
  the service) is shared by the group's K samples. ``commit`` rolls the service's pool.
* :class:`CreditRewards` — per-sample distribution-wise credits from the reward service (each
  sample replaces one pool row shared by the request), advantages normalised within each
  group (each "prompt"); a share of every request is committed in the same request.
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

__all__ = [
    "CreditRewards",
    "PerSampleRewards",
    "RewardSource",
    "Scores",
    "ServiceRewards",
    "normalise",
]


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
class CreditRewards:
    """Per-sample credits from the reward service for reference ``reference``.

    Each group is one prompt's samples: advantages are normalised within it, as trainers that
    normalise per prompt do. ``commit_fraction`` of every request's samples is committed in the
    same request under the key ``{run}-{seed}`` (a step's seed: a resumed step replays its
    commit instead of applying it twice); None never commits, and the pool stalls.
    """

    client: RewardClient
    reference: str
    commit_fraction: float | None = 0.25
    run: str = "run"

    def score(self, features: np.ndarray, seed: int) -> Scores:
        """Credits of the (G, K, d) samples, against the row ``seed`` draws."""
        groups, size, d = features.shape
        key = None if self.commit_fraction is None else f"{self.run}-{seed}"
        batch = self.client.credits(
            self.reference,
            features.reshape(groups * size, d),
            seed=seed,
            commit_fraction=self.commit_fraction,
            idempotency_key=key,
        )
        rewards = np.asarray(batch.rewards, np.float64).reshape(groups, size)
        advantages = np.stack([normalise(group) for group in rewards])
        info = {
            "base_fd": float(batch.base_fd),
            "version": float(batch.version),
            "freshness": float(batch.freshness.share),
        }
        return Scores(rewards=rewards, advantages=advantages, info=info)

    def commit(self, features: np.ndarray) -> None:
        """Nothing more to roll: every request committed its share already."""


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
