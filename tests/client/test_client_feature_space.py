"""The client names the feature space of what it posts: the ``Feature-Space`` header on every
request that carries features, from the config, the call, a stats file or an extractor."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from client_fakes import FakeService, commit_json, info_json, ok, rewards_json

import reward_client as rc
from reward_client import credit_reward_fn, distribution_reward_fn
from reward_client.features import FeatureSpace, save_stats

SPACE = FeatureSpace("test/net", "0" * 64, "rgb-u8", 4)
OTHER = "other/net@sha256:1111111111111111/rgb-u8"


def _answer(request: httpx.Request) -> httpx.Response:
    """A valid answer for whichever route was called."""
    path = request.url.path
    if path.endswith("/rewards"):
        return ok(rewards_json([0.5, -0.5], k=2))
    if path.endswith("/commit"):
        return ok(commit_json())
    if path.endswith("/fd"):
        return ok({"reference": "ref", "version": 1, "fd": 1.0, "n": 4})
    if path.endswith("/pool") and request.method == "PUT":  # the first of two chunks
        return ok({"staged_rows": 2})
    return ok(info_json())


def _every_post(client: rc.RewardClient) -> None:
    rows = np.ones((4, 4))
    client.rewards("ref", rows.reshape(2, 2, 4))
    client.commit("ref", rows)
    client.fd("ref", rows)
    client.put_pool("ref", rows, chunk_rows=2)
    client.put_target("ref", features=rows)
    client.put_target("ref", mu=np.zeros(4), sigma=np.eye(4))


@pytest.mark.parametrize("binary", [True, False])
def test_the_configured_space_goes_with_every_post(client_for, binary: bool) -> None:
    fake = FakeService(_answer)
    _every_post(client_for(fake, binary=binary, feature_space=SPACE.id))
    assert len(fake.requests) == 7  # the pool in two chunks
    assert [r.headers.get("Feature-Space") for r in fake.requests] == [SPACE.id] * 7


def test_without_a_space_nothing_is_sent_and_a_call_overrides_the_config(client_for) -> None:
    fake = FakeService(_answer)
    _every_post(client_for(fake))
    assert all("Feature-Space" not in r.headers for r in fake.requests)
    fake = FakeService(_answer)
    client = client_for(fake, feature_space=SPACE.id)
    client.rewards("ref", np.ones((2, 2, 4)), feature_space=OTHER)
    client.fd("ref", np.ones((2, 4)), feature_space=SPACE)  # a FeatureSpace is taken too
    assert [r.headers["Feature-Space"] for r in fake.requests] == [OTHER, SPACE.id]


def test_spaces_come_from_the_constructor_and_the_environment() -> None:
    client = rc.RewardClient("http://service", feature_space=SPACE)
    assert client.config.feature_space == SPACE.id
    client.close()
    env = {"DISTREWARD_URL": "http://service", "DISTREWARD_FEATURE_SPACE": OTHER}
    assert rc.ClientConfig.from_env(env).feature_space == OTHER
    with pytest.raises(ValueError, match="printable ASCII"):
        rc.ClientConfig(feature_space="two words")


def test_a_stats_file_sends_only_mu_sigma_and_its_recorded_space(
    client_for, tmp_path: Path
) -> None:
    fake = FakeService(ok(info_json(n=0)))
    client = client_for(fake)
    path = save_stats(tmp_path / "stats.npz", np.zeros(4), np.eye(4), SPACE)
    client.put_target("ref", stats=path)
    (request,) = fake.requests
    assert request.headers["Feature-Space"] == SPACE.id
    assert "accept_unknown_feature_space" not in request.url.params

    # ADM's layout: the images beside the statistics stay home.
    adm = tmp_path / "adm.npz"
    np.savez(adm, arr_0=np.zeros((64, 8, 8, 3), np.uint8), mu=np.ones(4), sigma=np.eye(4))
    client_for(fake, binary=False).put_target("ref", stats=adm, accept_unknown_feature_space=True)
    sent = fake.requests[-1]
    assert json.loads(sent.content) == {"mu": [1.0] * 4, "sigma": np.eye(4).tolist()}
    assert sent.url.params["accept_unknown_feature_space"] == "true"
    assert "Feature-Space" not in sent.headers

    with pytest.raises(ValueError, match="records feature space"):
        client.put_target("ref", stats=path, feature_space=OTHER)
    with pytest.raises(ValueError, match="stats alone"):
        client.put_target("ref", mu=np.zeros(4), stats=path)
    assert len(fake.requests) == 2


def test_reward_functions_take_the_extractors_space() -> None:
    class Extractor:
        """What the reward functions look for on a feature map: its ``feature_space``."""

        feature_space = SPACE

        def __call__(self, samples: np.ndarray) -> np.ndarray:
            return samples

    fake = FakeService(ok(rewards_json([0.5, -0.5], k=2)))
    with rc.RewardClient("http://service", transport=httpx.MockTransport(fake)) as client:
        distribution_reward_fn(client, "ref", 2, feature_fn=Extractor())(np.ones((4, 4)))
        assert fake.requests[-1].headers["Feature-Space"] == SPACE.id
        with pytest.raises(ValueError, match="makes features of"):
            credit_reward_fn(client, "ref", feature_fn=Extractor(), feature_space=OTHER)
