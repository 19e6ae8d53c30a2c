"""The drop-in reward function: groups cut in input order, rewards returned in input order."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from client_fakes import FakeService, config, npy_body, ok, rewards_json

from reward_client import RewardClient, as_multi_score, distribution_reward_fn


def group_index_rewards(request: httpx.Request) -> httpx.Response:
    """Each group's reward is the first feature of its first sample: traceable order."""
    groups = npy_body(request)
    return ok(rewards_json(groups[:, 0, 0].astype(float).tolist(), k=groups.shape[1]))


@pytest.fixture
def client_and_fake():
    fake = FakeService(group_index_rewards)
    with RewardClient(config=config(), transport=httpx.MockTransport(fake)) as client:
        yield client, fake


def test_rewards_follow_input_order(client_and_fake):
    client, fake = client_and_fake
    g, k, d = 3, 4, 5
    features = np.zeros((g * k, d))
    features[:, 0] = np.arange(g * k) // k * 10.0  # sample i belongs to group i // k
    features[:, 1] = np.arange(g * k)
    reward_fn = distribution_reward_fn(client, "ref", group_size=k)

    rewards, info = reward_fn(features, ["a prompt"] * (g * k), [{}] * (g * k))

    np.testing.assert_array_equal(rewards, np.repeat([0.0, 10.0, 20.0], k))
    posted = npy_body(fake.requests[0])
    assert posted.shape == (g, k, d)
    np.testing.assert_array_equal(posted.reshape(g * k, d), features)  # groups in input order
    np.testing.assert_array_equal(info["group_rewards"], [0.0, 10.0, 20.0])
    assert info["sample_advantages"].shape == (g * k,)
    assert info["advantages"].shape == (g,)
    assert (info["version"], info["base_fd"], info["seed"]) == (1, 12.5, 7)


def test_feature_fn_maps_samples_to_features(client_and_fake):
    client, _ = client_and_fake
    images = np.arange(4 * 2 * 2, dtype=np.float32).reshape(4, 2, 2)  # 4 tiny "images"
    reward_fn = distribution_reward_fn(
        client, "ref", group_size=2, feature_fn=lambda x: x.reshape(len(x), -1)
    )
    rewards, _ = reward_fn(images, None, None)
    np.testing.assert_array_equal(rewards, [0.0, 0.0, 8.0, 8.0])


def test_options_are_passed_on(client_and_fake):
    client, fake = client_and_fake
    reward_fn = distribution_reward_fn(client, "ref", 2, mode="independent", seed=5, version=1)
    reward_fn(np.ones((4, 3)), None, None)
    params = fake.requests[0].url.params
    assert (params["mode"], params["seed"], params["version"]) == ("independent", "5", "1")


@pytest.mark.parametrize("batch", [0, 5])
def test_batch_must_be_a_multiple_of_the_group_size(client_and_fake, batch):
    client, fake = client_and_fake
    with pytest.raises(ValueError, match="multiple of group_size=2"):
        distribution_reward_fn(client, "ref", 2)(np.ones((batch, 3)), None, None)
    assert fake.count == 0


def test_torch_features(client_and_fake):
    torch = pytest.importorskip("torch")
    client, _ = client_and_fake
    features = torch.zeros(4, 3)
    features[2:, 0] = 7.0
    rewards, _ = distribution_reward_fn(client, "ref", 2)(features, None, None)
    np.testing.assert_array_equal(rewards, [0.0, 0.0, 7.0, 7.0])


def test_multi_score_form(client_and_fake):
    client, _ = client_and_fake
    score_fn = as_multi_score(distribution_reward_fn(client, "ref", 2), name="fd")
    features = np.zeros((4, 3))
    features[2:, 0] = 5.0
    scores, info = score_fn(features, ["p"] * 4, [{}] * 4, only_strict=True)
    assert set(scores) == {"fd", "avg"}
    np.testing.assert_array_equal(scores["avg"], [0.0, 0.0, 5.0, 5.0])
    assert info["version"] == 1
