"""`credit_reward_fn` driven the way flow_grpo (``scripts/train_sd3.py``) and ddpo-pytorch
(``scripts/train.py``) drive a reward function, against a real service process.

Both trainers submit ``reward_fn(images, prompts, metadata[, only_strict=True])`` to a thread
pool once per sampling batch, collect the futures after sampling, and turn the per-sample
rewards into advantages per prompt (each sample against the other samples of its prompt). The
tracker below is written from that description; the checks are the issue's: a non-zero
advantage for at least 99% of samples, per-sample rewards in input order, and every commit
applied once, also when answers are lost and the requests retried, and across DDP ranks.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest

from reward_client import ClientConfig, RewardClient, credit_reward_fn

SIDE = 4  # "images" are SIDE x SIDE; their features the flattened pixels
D = SIDE * SIDE
N = 512
PROMPTS = ("a cat", "a dog", "a red car", "two birds")


def _features(images: Any) -> np.ndarray:
    """The trainer's images (B, 1, SIDE, SIDE) to features (B, D)."""
    array = np.asarray(images, dtype=np.float32)
    return array.reshape(len(array), -1)


class PerPromptTracker:
    """Per-prompt advantage normalisation: each reward against the mean and std of the rewards
    its prompt received in the epoch."""

    def __init__(self, epsilon: float) -> None:
        self.epsilon = epsilon

    def update(self, prompts: list[str], rewards: np.ndarray) -> np.ndarray:
        by_prompt: dict[str, list[int]] = defaultdict(list)
        for i, prompt in enumerate(prompts):
            by_prompt[prompt].append(i)
        advantages = np.zeros_like(rewards)
        for members in by_prompt.values():
            values = rewards[members]
            advantages[members] = (values - values.mean()) / (values.std() + self.epsilon)
        return advantages


class LosingTransport(httpx.HTTPTransport):
    """Forwards to the service but loses the first answer to every committing credits request
    (a 502 from a gateway after the service applied it): the client must resend it, and the
    commit must still apply once."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: set[str] = set()
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            first = key is not None and key not in self.lost
            if first:
                self.lost.add(key)
        if first:
            response.read()
            response.close()
            return httpx.Response(502, request=request)
        return response


@pytest.fixture(scope="module")
def reference(service: Any) -> str:
    rng = np.random.default_rng(0)
    with service.client() as admin:
        real = rng.normal(0.5, 1.0, size=(4 * N, D))
        admin.put_target("harness", features=real, accept_unknown_feature_space=True)
        admin.put_pool("harness", rng.normal(0.0, 1.0, size=(N, D)))
    return "harness"


@pytest.fixture
def losing() -> LosingTransport:
    return LosingTransport()


@pytest.fixture
def client(service: Any, losing: LosingTransport) -> Iterator[RewardClient]:
    config = ClientConfig(base_url=service.url, token=service.token, backoff=0.0)
    with RewardClient(config=config, transport=losing) as client:
        yield client


def _epoch(rng: np.random.Generator, per_prompt: int, batch: int):
    """An epoch's sampling batches: images (a drifting policy), prompts, metadata."""
    prompts = [p for p in PROMPTS for _ in range(per_prompt)]
    rng.shuffle(prompts)
    images = rng.normal(0.2, 1.0, size=(len(prompts), 1, SIDE, SIDE)).astype(np.float32)
    for start in range(0, len(prompts), batch):  # the last batch partial when uneven
        part = slice(start, start + batch)
        yield images[part], prompts[part], [{"prompt": p} for p in prompts[part]]


@pytest.mark.parametrize(
    "trainer, batch, per_prompt, workers",
    [
        ("flow_grpo", 9, 24, 8),  # flow_grpo's 32-GPU config: batches of 9, 24 per prompt
        ("flow_grpo", 16, 13, 8),  # eval-sized batches, the last one partial (52 = 3 x 16 + 4)
        ("ddpo", 1, 6, 2),  # ddpo's default sampling batch
        ("ddpo", 16, 10, 2),
    ],
)
def test_trainers_get_per_sample_advantages_and_every_commit_applies_once(
    client: RewardClient,
    losing: LosingTransport,
    reference: str,
    trainer: str,
    batch: int,
    per_prompt: int,
    workers: int,
) -> None:
    rng = np.random.default_rng(batch)
    before = client.info(reference)
    reward_fn = credit_reward_fn(client, reference, feature_fn=_features, output=trainer)
    all_prompts: list[str] = []
    all_rewards: list[np.ndarray] = []
    committed_calls = committed_rows = 0
    with ThreadPoolExecutor(max_workers=workers) as executor:
        submitted = []
        for images, prompts, metadata in _epoch(rng, per_prompt, batch):
            if trainer == "flow_grpo":
                future = executor.submit(reward_fn, images, prompts, metadata, only_strict=True)
            else:
                future = executor.submit(reward_fn, images, prompts, metadata)
            submitted.append((prompts, future))
        for prompts, future in submitted:
            rewards, info = future.result()
            if trainer == "flow_grpo":
                assert set(rewards) == {"avg", "distribution"}
                rewards = rewards["avg"]
            assert np.asarray(rewards).shape == (len(prompts),)
            all_prompts += prompts
            all_rewards.append(np.asarray(rewards, dtype=np.float64))
            committed_calls += info["committed"] > 0
            committed_rows += info["committed"]
    rewards = np.concatenate(all_rewards)
    assert np.isfinite(rewards).all()
    epsilon = 1e-4 if trainer == "flow_grpo" else 1e-6  # the trainers' own guards
    advantages = PerPromptTracker(epsilon).update(all_prompts, rewards)
    assert np.mean(advantages != 0.0) >= 0.99
    # Every commit applied once: one version per commit, though the first answer to every
    # call was lost and its request resent.
    assert len(losing.lost) == len(submitted)
    after = client.info(reference)
    assert after.version == before.version + committed_calls
    assert committed_rows > 0 and after.freshness is not None
    assert after.freshness.rows >= committed_rows


def test_rewards_come_back_in_input_order(service: Any, reference: str) -> None:
    rng = np.random.default_rng(5)
    images = rng.normal(size=(9, 1, SIDE, SIDE)).astype(np.float32)
    with service.client() as client:
        reward_fn = credit_reward_fn(
            client, reference, feature_fn=_features, output="ddpo", commit_fraction=None, seed=4
        )
        forward, info = reward_fn(images, ["p"] * 9, [{}] * 9)
        backward, again = reward_fn(images[::-1], ["p"] * 9, [{}] * 9)
    assert info["row"] == again["row"] and info["committed"] == 0
    np.testing.assert_allclose(backward, forward[::-1], rtol=1e-12)
    assert len(set(forward.tolist())) == 9


def test_ddp_ranks_commit_under_their_own_keys(service: Any, reference: str) -> None:
    rng = np.random.default_rng(6)
    with service.client() as client:
        before = client.info(reference).version
        ranks = [
            credit_reward_fn(
                client, reference, feature_fn=_features, run_id="run-7", rank=rank,
                commit_fraction=1.0,
            )
            for rank in range(2)
        ]  # fmt: skip
        images = rng.normal(size=(8, 1, SIDE, SIDE)).astype(np.float32)
        with ThreadPoolExecutor(max_workers=8) as executor:
            # Both ranks' first calls have call number 0: the rank keeps their keys apart.
            answers = list(executor.map(lambda fn: fn(images, ["p"] * 8, None)[1], ranks))
        assert [a["committed"] for a in answers] == [8, 8]
        assert client.info(reference).version == before + 2


def test_a_stalled_pool_is_reported_once(service: Any, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(7)
    config = ClientConfig(base_url=service.url, token=service.token, stalled_calls=3)
    with RewardClient(config=config) as client, caplog.at_level(logging.WARNING):
        real = rng.normal(0.5, 1.0, size=(2 * N, D))
        client.put_target("stalled", features=real, accept_unknown_feature_space=True)
        client.put_pool("stalled", rng.normal(size=(N, D)))
        still = credit_reward_fn(client, "stalled", commit_fraction=None)
        for _ in range(6):
            still(rng.normal(size=(4, D)), None, None)
        stalled = [r for r in caplog.records if "commit more" in r.getMessage()]
        assert len(stalled) == 1 and "stalled" in stalled[0].getMessage()
        assert "nothing committed" in stalled[0].getMessage()
        # A pool too large for what is committed is reported from its first calls: 4 ranks
        # committing 1 row a call each renew N rows in N / 4 steps, over the limit.
        slow = RewardClient(config=replace(config, ranks=4, turnover_steps=N / 8))
        slow.put_target("large", features=real, accept_unknown_feature_space=True)
        slow.put_pool("large", rng.normal(size=(N, D)))
        trickle = credit_reward_fn(slow, "large", commit_fraction=0.25)
        for _ in range(5):  # the first answer knows no volume yet; then 3 in a row
            trickle(rng.normal(size=(4, D)), None, None)
        large = [r for r in caplog.records if "reference large" in r.getMessage()]
        assert len(large) == 1 and f"renews in {N // 4} steps" in large[0].getMessage()
        slow.close()
        # A pool renewed in N / 16 = 32 steps is not reported.
        real = rng.normal(0.5, 1.0, size=(2 * N, D))
        client.put_target("moving", features=real, accept_unknown_feature_space=True)
        client.put_pool("moving", rng.normal(size=(N, D)))
        moving = credit_reward_fn(client, "moving", commit_fraction=1.0)
        for _ in range(6):
            moving(rng.normal(size=(16, D)), None, None)
    assert not [r for r in caplog.records if "reference moving" in r.getMessage()]


@pytest.mark.parametrize("binary", [True, False], ids=["npy", "json"])
def test_group_rewards_commit_a_share_in_the_same_request(
    service: Any, reference: str, binary: bool
) -> None:
    rng = np.random.default_rng(8)
    config = ClientConfig(base_url=service.url, token=service.token, binary=binary)
    with RewardClient(config=config) as client:
        before = client.info(reference).version
        groups = rng.normal(size=(4, 4, D))
        batch = client.rewards(reference, groups, seed=2, commit_fraction=0.5)
        assert batch.committed is not None and batch.committed.rows == 8
        assert batch.committed.version == before + 1 and batch.version == before
        assert batch.freshness is not None and 0.0 <= batch.freshness.share <= 1.0
        again = client.rewards(
            reference,
            groups,
            seed=2,
            commit_fraction=0.5,
            idempotency_key=batch.committed.idempotency_key,
        )
        assert again.committed is not None and again.committed.replayed
        assert client.info(reference).version == before + 1
        assert client.rewards(reference, groups).committed is None
