"""Reward sources: broadcasting of group rewards and per-sample normalisation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from reward_client.training.sources import PerSampleRewards, ServiceRewards, normalise


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...], str, int | None]] = []
        self.committed: list[np.ndarray] = []

    def rewards(self, name: str, groups: np.ndarray, *, mode: str, seed: int | None):
        self.calls.append((name, groups.shape, mode, seed))
        r = np.arange(groups.shape[0], dtype=np.float64)
        return SimpleNamespace(rewards=r, advantages=normalise(r), base_fd=5.0, version=3)

    def commit(self, name: str, features: np.ndarray) -> None:
        self.committed.append(features)


def test_service_rewards_broadcast_each_group_over_its_samples() -> None:
    client = FakeClient()
    source = ServiceRewards(client, "ref")  # type: ignore[arg-type]
    scores = source.score(np.zeros((3, 4, 2), np.float32), seed=9)
    assert client.calls == [("ref", (3, 4, 2), "shared", 9)]
    assert scores.rewards.shape == scores.advantages.shape == (3, 4)
    np.testing.assert_array_equal(scores.rewards[:, 0], [0, 1, 2])
    assert (scores.rewards == scores.rewards[:, :1]).all()
    assert scores.info == {"base_fd": 5.0, "version": 3.0}
    source.commit(np.ones((4, 2)))
    assert len(client.committed) == 1


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
