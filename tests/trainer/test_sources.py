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
