"""Reward sources: broadcasting of group rewards, per-sample and per-prompt normalisation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from reward_client.training.sources import (
    CreditRewards,
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
    """Credits ``samples[:, 0]`` (so a test knows each sample's credit); every request and
    commit in order in ``events``."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], int, str | None, float | None, str | None]] = []
        self.events: list[tuple[str, object]] = []

    def credits(self, name, samples, *, seed, round, commit_fraction, idempotency_key):
        self.calls.append((samples.shape, seed, round, commit_fraction, idempotency_key))
        self.events.append(("credits", round))
        rewards = samples[:, 0].astype(np.float64)
        return SimpleNamespace(
            rewards=rewards,
            base_fd=5.0,
            version=4,
            freshness=SimpleNamespace(share=0.25),
            lag=SimpleNamespace(versions=1, rows=3),
        )

    def commit(self, name, features, idempotency_key=None):
        self.events.append(("commit", (features.copy(), idempotency_key)))


def test_credit_rewards_normalise_within_each_group_and_commit_in_the_request() -> None:
    client = FakeCreditClient()
    source = CreditRewards(client, "ref", commit_fraction=0.5, run="r")  # type: ignore[arg-type]
    features = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    features[1] *= 10.0  # a group on another scale: its advantages are its own
    scores = source.score(features, seed=7, step=3)
    # The step names the round every rank of it shares; the seed keys the commit.
    assert client.calls == [((6, 2), 7, "r/3", 0.5, "r-7")]
    np.testing.assert_array_equal(scores.rewards, features[:, :, 0])
    for group in scores.advantages:
        np.testing.assert_allclose(group, normalise(group))
        assert abs(group.mean()) < 1e-12
    np.testing.assert_allclose(scores.advantages[0], scores.advantages[1])
    assert scores.info == {"base_fd": 5.0, "version": 4.0, "freshness": 0.25, "lag_rows": 3.0}
    stalled = CreditRewards(client, "ref", commit_fraction=None)  # type: ignore[arg-type]
    stalled.score(features, seed=8)
    assert client.calls[-1][2:] == (None, None, None)  # no step: no round; no commit
    assert [kind for kind, _ in client.events] == ["credits", "credits"]  # nothing else sent


def _commits(client: FakeCreditClient) -> list[tuple[np.ndarray, str]]:
    return [payload for kind, payload in client.events if kind == "commit"]  # type: ignore[misc]


def _members(rows: np.ndarray, samples: np.ndarray) -> bool:
    """Whether every row of ``rows`` is one of ``samples``'s rows."""
    return all((samples == row).all(axis=1).any() for row in rows)


def test_lagging_credits_commit_every_share_but_the_newest_rows_after_the_next_credits() -> None:
    client = FakeCreditClient()
    lag, d = 5, 3
    source = CreditRewards(client, "ref", commit_fraction=0.25, run="r", lag_rows=lag)  # type: ignore[arg-type]
    steps = [np.random.default_rng(n).normal(size=(20, 12, d)) for n in range(3)]
    for step, features in enumerate(steps):
        source.score(features, seed=100 + step, step=step)
    # No commit rides on a credits request; each step's commit request follows its credits.
    assert all(call[2:] == (f"r/{n}", None, None) for n, call in enumerate(client.calls))
    assert [kind for kind, _ in client.events] == ["credits", "commit"] * 3
    commits = _commits(client)
    assert [key for _, key in commits] == ["r-100", "r-101", "r-102"]
    # Step n commits the 5 rows step n - 1 held, then its own share of 60 (a quarter of 240)
    # but its last 5: every credit met a pool missing exactly the 5 newest rows.
    rows = [committed for committed, _ in commits]
    assert [len(r) for r in rows] == [60 - lag, 60, 60]
    samples = [features.reshape(-1, d) for features in steps]
    for n in range(3):
        own = rows[n][-(60 - lag) :]
        assert _members(own, samples[n])
        assert len({row.tobytes() for row in own}) == len(own)  # drawn without replacement
        if n:
            assert _members(rows[n][:lag], samples[n - 1])


def test_lagging_credits_draw_an_unbiased_share() -> None:
    client = FakeCreditClient()
    source = CreditRewards(client, "ref", commit_fraction=0.25, run="r", lag_rows=1)  # type: ignore[arg-type]
    features = np.arange(10 * 2, dtype=np.float64).reshape(2, 5, 2)
    calls = 400
    for step in range(calls):
        source.score(features, seed=step, step=step)
    # A quarter of 10 samples: 2 or 3 rows a step, 2.5 on average; one row held at the end.
    committed = sum(len(rows) for rows, _ in _commits(client)) + 1
    assert abs(committed / calls - 2.5) < 4 * (0.25 / calls) ** 0.5
    with pytest.raises(ValueError, match="lag_rows"):
        CreditRewards(client, "ref", lag_rows=-1)  # type: ignore[arg-type]
