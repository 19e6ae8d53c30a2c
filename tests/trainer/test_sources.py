"""Reward sources: broadcasting of group rewards, per-sample and per-prompt normalisation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from reward_client.training.sources import (
    PerSampleRewards,
    ServiceRewards,
    normalise,
    per_prompt,
)


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.committed: list[np.ndarray] = []

    def rewards(self, name, groups, *, mode, seed, commit_fraction, idempotency_key):
        self.calls.append((name, groups.shape, mode, seed, commit_fraction, idempotency_key))
        r = np.arange(groups.shape[0], dtype=np.float64)
        fresh = None if commit_fraction is None else SimpleNamespace(share=0.5)
        return SimpleNamespace(
            rewards=r, advantages=normalise(r), base_fd=5.0, version=3, freshness=fresh
        )

    def commit(self, name: str, features: np.ndarray) -> None:
        self.committed.append(features)


def test_service_rewards_broadcast_each_group_over_its_samples() -> None:
    client = FakeClient()
    source = ServiceRewards(client, "ref")  # type: ignore[arg-type]
    scores = source.score(np.zeros((3, 4, 2), np.float32), seed=9)
    assert client.calls == [("ref", (3, 4, 2), "shared", 9, None, None)]
    assert scores.rewards.shape == scores.advantages.shape == (3, 4)
    np.testing.assert_array_equal(scores.rewards[:, 0], [0, 1, 2])
    assert (scores.rewards == scores.rewards[:, :1]).all()
    assert scores.info == {"base_fd": 5.0, "version": 3.0}
    source.commit(np.ones((4, 2)))
    assert len(client.committed) == 1
    committing = ServiceRewards(client, "ref", commit_fraction=0.25, run="r")  # type: ignore[arg-type]
    assert committing.score(np.zeros((3, 4, 2), np.float32), seed=5).info["freshness"] == 0.5
    assert client.calls[-1][4:] == (0.25, "r-5")  # committed in the request, keyed by the step


def test_per_prompt_normalises_each_reward_against_its_own_prompt_by_hand() -> None:
    rewards = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 0.5])
    prompts = np.array(["a", "b", "a", "b", "a", "c"])
    # "a": 1, 3, 20: mean 8, variance (49 + 25 + 144) / 3; "b": 2, 10: mean 6, std 4;
    # "c" alone: no spread, advantage 0.
    std_a = math.sqrt(218 / 3)
    expected = [-7 / std_a, -1.0, -5 / std_a, 1.0, 12 / std_a, 0.0]
    np.testing.assert_allclose(per_prompt(rewards, prompts), expected, rtol=1e-8, atol=1e-12)
    # Shaped like the rewards: a (G, K) batch with one label per sample.
    grid = per_prompt(rewards.reshape(2, 3), prompts.reshape(2, 3))
    np.testing.assert_allclose(grid.reshape(-1), expected, rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="do not match"):
        per_prompt(rewards, prompts[:5])


def test_per_sample_rewards_are_normalised_over_the_batch() -> None:
    source = PerSampleRewards(lambda f: f[:, 0])
    feats = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    scores = source.score(feats, seed=0)
    np.testing.assert_array_equal(scores.rewards, feats[..., 0])
    assert abs(scores.advantages.mean()) < 1e-12
    assert abs(scores.advantages.std() - 1) < 1e-6
    source.commit(feats[0])  # no pool: accepted and ignored


class FakeCreditClient:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], int, float | None, str | None]] = []

    def credits(self, name, samples, *, seed, commit_fraction, idempotency_key):
        self.calls.append((samples.shape, seed, commit_fraction, idempotency_key))
        rewards = samples[:, 0].astype(np.float64)
        return SimpleNamespace(
            rewards=rewards, base_fd=5.0, version=4, freshness=SimpleNamespace(share=0.25)
        )


def test_credit_rewards_normalise_within_each_group_and_commit_in_the_request() -> None:
    from reward_client.training.sources import CreditRewards

    client = FakeCreditClient()
    source = CreditRewards(client, "ref", commit_fraction=0.5, run="r")  # type: ignore[arg-type]
    features = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    features[1] *= 10.0  # a group on another scale: its advantages are its own
    scores = source.score(features, seed=7)
    assert client.calls == [((6, 2), 7, 0.5, "r-7")]
    np.testing.assert_array_equal(scores.rewards, features[:, :, 0])
    for group in scores.advantages:
        np.testing.assert_allclose(group, normalise(group))
        assert abs(group.mean()) < 1e-12
    np.testing.assert_allclose(scores.advantages[0], scores.advantages[1])
    assert scores.info == {"base_fd": 5.0, "version": 4.0, "freshness": 0.25}
    stalled = CreditRewards(client, "ref", commit_fraction=None)  # type: ignore[arg-type]
    stalled.score(features, seed=8)
    assert client.calls[-1][2:] == (None, None)
