"""Reward sources for trainer workers: what a worker needs from "something that scores samples".

A source turns features of G groups of K samples into per-sample rewards and advantages, and
optionally rolls a pool with accepted samples. Three kinds:

* :class:`ServiceRewards` — distribution-wise rewards from the reward service: each group's
  reward is ``FD_0 - FD_I(group)`` and its advantage (normalised over the request's groups by
  the service) is shared by the group's K samples. ``commit`` rolls the service's pool.
* :class:`CreditRewards` — per-sample distribution-wise credits from the reward service (the FD
  change when each sample is added to the pool; the ranks of one step form a round answered
  at one pool version), advantages normalised within each group (each "prompt"); a share of
  every request is committed in the same request.
* :class:`LeaveOneOutCredits` — per-sample credits inside groups from the service's group
  rewards: sample j's credit is its group's reward minus the reward of the group without it
  (its marginal effect on the group), both in float64 from one pool version.
* :class:`PerSampleRewards` — a per-sample reward ``r_i = f(features_i)`` with the advantage
  ``(r_i - mean r) / (std r + 1e-8)`` over the whole batch; there is no pool to roll.

A trainer that normalises per prompt (flow_grpo, ddpo-pytorch) uses the ``rewards`` of the
scores with :func:`per_prompt` instead of the source's advantages.

numpy only: the worker converts tensors at its boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .._sync_client import RewardClient
from .._types import Mode

__all__ = [
    "CreditRewards",
    "LeaveOneOutCredits",
    "PerSampleRewards",
    "RewardSource",
    "Scores",
    "ServiceRewards",
    "normalise",
    "per_prompt",
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

    def score(self, features: np.ndarray, seed: int, *, step: int | None = None) -> Scores:
        """Score features (G, K, d); ``seed`` makes any randomness reproducible. ``step`` is the
        trainer's step (steps done so far, restored on resume): the same on every rank of one
        step, so a source can name the step's round of requests (None: no step to name)."""
        ...

    def commit(self, features: np.ndarray) -> None:
        """Roll accepted features (n, d) into the pool, if the source keeps one."""
        ...


def normalise(rewards: np.ndarray) -> np.ndarray:
    """Advantages ``(r - mean r) / (std r + 1e-8)`` over all entries (std with ddof 0)."""
    r = np.asarray(rewards, dtype=np.float64)
    advantages: np.ndarray = (r - r.mean()) / (r.std() + 1e-8)
    return advantages


def per_prompt(rewards: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    """Advantages normalised per prompt, as flow_grpo's and ddpo-pytorch's per-prompt stat
    tracking does within a batch: each reward against the mean and std (ddof 0) of the rewards
    of the samples with the same prompt, ``(r - mean_p) / (std_p + 1e-8)``.

    ``prompts`` holds one label per reward, shaped like ``rewards``; the result is too.
    """
    r = np.asarray(rewards, dtype=np.float64)
    labels = np.asarray(prompts)
    if labels.shape != r.shape:
        raise ValueError(f"prompts {labels.shape} do not match rewards {r.shape}")
    advantages = np.empty_like(r)
    for prompt in np.unique(labels):
        members = labels == prompt
        advantages[members] = normalise(r[members])
    return advantages


@dataclass
class ServiceRewards:
    """Distribution-wise rewards from the reward service for reference ``reference``.

    ``mode`` is the service's row-replacement mode; ``"shared"`` (common random rows for all
    groups of a request) keeps the groups' rewards comparable. ``commit_fraction`` of every
    request's samples is committed in the same request under the key ``{run}-{seed}``, as
    :class:`CreditRewards` does; None (the default) leaves the pool to :meth:`commit`.
    """

    client: RewardClient
    reference: str
    mode: Mode = "shared"
    commit_fraction: float | None = None
    run: str = "run"

    def score(self, features: np.ndarray, seed: int, *, step: int | None = None) -> Scores:
        """Post the groups (G, K, d); broadcast each group's reward and advantage over K.
        ``step`` is unused: group rewards have no rounds."""
        size = features.shape[1]
        batch = self.client.rewards(
            self.reference,
            features,
            mode=self.mode,
            seed=seed,
            commit_fraction=self.commit_fraction,
            idempotency_key=None if self.commit_fraction is None else f"{self.run}-{seed}",
        )
        rewards = np.repeat(np.asarray(batch.rewards, np.float64)[:, None], size, axis=1)
        advantages = np.repeat(np.asarray(batch.advantages, np.float64)[:, None], size, axis=1)
        info = {"base_fd": float(batch.base_fd), "version": float(batch.version)}
        if batch.freshness is not None:
            info["freshness"] = float(batch.freshness.share)
        return Scores(rewards=rewards, advantages=advantages, info=info)

    def commit(self, features: np.ndarray) -> None:
        """Replace the oldest pool rows by ``features`` (n, d)."""
        self.client.commit(self.reference, features)


@dataclass
class CreditRewards:
    """Per-sample credits from the reward service for reference ``reference``.

    Each sample's credit is the service's default form, the FD change when the sample is added
    to the pool (no pool row involved: one credit per sample and pool version on every rank).
    Each group is one prompt's samples: advantages are normalised within it, as trainers that
    normalise per prompt do. A step's requests form the round ``{run}/{step}`` (``run`` the same
    on every rank): the service answers every rank of a step at one pool version.
    ``commit_fraction`` of every request's samples is committed in the same request under the
    key ``{run}-{seed}`` (a step's seed: a resumed step replays its commit instead of applying
    it twice); None never commits, and the pool stalls.

    ``lag_rows`` measures what a pool that lags the policy costs: the source then draws the
    step's share itself (as the service draws it: ``floor(f B)`` samples plus one more with
    probability ``frac(f B)``, uniformly, in the order drawn), commits it in a request of its
    own after the credits, and holds back the last ``lag_rows`` rows of each step's share until
    the next step's credits are computed. Every credit is then computed against a pool missing
    exactly the ``lag_rows`` newest rows. The held rows live in this object only: a run resumed
    from a checkpoint, or one that ends, never commits them.
    """

    client: RewardClient
    reference: str
    commit_fraction: float | None = 0.25
    run: str = "run"
    lag_rows: int = 0
    _held: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.lag_rows < 0:
            raise ValueError(f"lag_rows must be >= 0, got {self.lag_rows}")

    def score(self, features: np.ndarray, seed: int, *, step: int | None = None) -> Scores:
        """Credits of the (G, K, d) samples, in round ``{run}/{step}`` (no round when
        ``step`` is None)."""
        groups, size, d = features.shape
        samples = features.reshape(groups * size, d)
        held_back = self.commit_fraction if self.lag_rows > 0 else None
        in_request = self.commit_fraction if held_back is None else None
        batch = self.client.credits(
            self.reference,
            samples,
            seed=seed,
            round=None if step is None else f"{self.run}/{step}",
            commit_fraction=in_request,
            idempotency_key=None if in_request is None else f"{self.run}-{seed}",
        )
        if held_back is not None:
            self._commit_lagging(samples, seed, held_back)
        rewards = np.asarray(batch.rewards, np.float64).reshape(groups, size)
        advantages = np.stack([normalise(group) for group in rewards])
        info = {
            "base_fd": float(batch.base_fd),
            "version": float(batch.version),
            "freshness": float(batch.freshness.share),
        }
        if batch.lag is not None:
            info["lag_rows"] = float(batch.lag.rows)
        return Scores(rewards=rewards, advantages=advantages, info=info)

    def _commit_lagging(self, samples: np.ndarray, seed: int, fraction: float) -> None:
        """Commit the previous step's held rows and this step's share but its last
        ``lag_rows``, which are held until the next step's credits."""
        rng = np.random.default_rng(seed)
        expected = fraction * len(samples)
        count = int(expected) + int(rng.random() < expected - int(expected))
        share = samples[rng.choice(len(samples), size=count, replace=False)]
        split = max(0, count - self.lag_rows)
        due = share[:split] if self._held is None else np.concatenate([self._held, share[:split]])
        self._held = share[split:]
        if len(due):
            self.client.commit(self.reference, due, idempotency_key=f"{self.run}-{seed}")

    def commit(self, features: np.ndarray) -> None:
        """Nothing more to roll: every step committed its share already."""


@dataclass
class LeaveOneOutCredits:
    """Leave-one-out credits from the service's group rewards for reference ``reference``.

    For a group ``Y`` of K samples replacing pool rows ``I`` (drawn from the step's seed, the
    same rows for every group), sample j's credit is its marginal effect on the group's reward::

        credit_j = reward(Y; I) - reward(Y without y_j; I without i_last)
                 = FD(pool with I \\ i_last replaced by Y \\ y_j) - FD(pool with I replaced by Y)

    (a subset-replace depends only on which rows leave and which samples enter, so the row kept
    in, ``i_last``, is one shared by every group and sample of the step). Both rewards are the
    service's certified float64 rewards of one pool version: one request of G·K groups of K - 1
    (no commit), then the G groups pinned to that version, committing ``commit_fraction`` of
    their samples under the key ``{run}-{seed}`` (None: never). Advantages are normalised
    within each group, like :class:`CreditRewards`.
    """

    client: RewardClient
    reference: str
    commit_fraction: float | None = 0.25
    run: str = "run"
    _pool_rows: int = field(default=0, init=False, repr=False)

    def rows(self, seed: int, size: int) -> np.ndarray:
        """The ``size`` pool rows a step with ``seed`` replaces: the first of a permutation of
        the pool's rows drawn from ``seed``."""
        if not self._pool_rows:  # the pool's size never changes: commits replace rows
            self._pool_rows = self.client.info(self.reference).n
        rows: np.ndarray = np.random.default_rng(seed).permutation(self._pool_rows)[:size]
        return rows

    def score(self, features: np.ndarray, seed: int, *, step: int | None = None) -> Scores:
        """Leave-one-out credits of the (G, K, d) groups, K >= 2, against rows ``seed`` draws
        (``step`` is unused: the second request pins the first one's version)."""
        groups, size, d = features.shape
        if size < 2:
            raise ValueError("leave-one-out credit needs groups of at least 2 samples")
        rows = self.rows(seed, size)
        # others[j] lists the samples of a group other than j, in order.
        others = np.array([[i for i in range(size) if i != j] for j in range(size)])
        without = self.client.rewards(
            self.reference,
            features[:, others].reshape(groups * size, size - 1, d),
            indices=rows[:-1],
        )
        key = None if self.commit_fraction is None else f"{self.run}-{seed}"
        full = self.client.rewards(
            self.reference,
            features,
            indices=rows,
            version=without.version,
            commit_fraction=self.commit_fraction,
            idempotency_key=key,
        )
        full_rewards = np.asarray(full.rewards, np.float64)
        rewards = full_rewards[:, None] - np.asarray(without.rewards, np.float64).reshape(
            groups, size
        )
        info = {"base_fd": float(full.base_fd), "version": float(full.version)}
        if full.freshness is not None:
            info["freshness"] = float(full.freshness.share)
        advantages = np.stack([normalise(group) for group in rewards])
        return Scores(rewards=rewards, advantages=advantages, info=info)

    def commit(self, features: np.ndarray) -> None:
        """Nothing more to roll: every request committed its share already."""


@dataclass
class PerSampleRewards:
    """Per-sample rewards ``fn(features (n, d)) -> (n,)``, advantages normalised over the batch."""

    fn: Callable[[np.ndarray], np.ndarray]

    def score(self, features: np.ndarray, seed: int, *, step: int | None = None) -> Scores:
        """Score every sample alone; ``seed`` and ``step`` are unused (the reward is
        deterministic and needs no round)."""
        groups, size, d = features.shape
        rewards = np.asarray(self.fn(features.reshape(groups * size, d)), np.float64)
        rewards = rewards.reshape(groups, size)
        return Scores(rewards=rewards, advantages=normalise(rewards))

    def commit(self, features: np.ndarray) -> None:
        """A per-sample reward keeps no pool: nothing to roll."""
