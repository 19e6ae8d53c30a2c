"""Settings: validated up front, tokens from the environment, never shown."""

from __future__ import annotations

import pytest
from client_fakes import TOKEN

from reward_client import ClientConfig, RewardClient


def test_from_env_reads_url_and_token():
    env = {"DISTREWARD_URL": "http://reward:9000", "DISTREWARD_TOKEN": TOKEN}
    cfg = ClientConfig.from_env(env, retries=1)
    assert (cfg.base_url, cfg.token, cfg.retries) == ("http://reward:9000", TOKEN, 1)


def test_token_is_not_in_repr():
    cfg = ClientConfig(token=TOKEN)
    assert TOKEN not in repr(cfg)
    with RewardClient(config=cfg) as client:
        assert TOKEN not in repr(client)


def test_constructor_arguments_override_config():
    with RewardClient("http://other:1", token=TOKEN, config=ClientConfig(retries=0)) as client:
        assert client.config.base_url == "http://other:1"
        assert client.config.token == TOKEN
        assert client.config.retries == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"base_url": "reward:8000"},
        {"timeout": 0},
        {"retries": -1},
        {"backoff": -1.0},
        {"wire_dtype": "int8"},
        {"chunk_bytes": 0},
    ],
)
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValueError):
        ClientConfig(**bad)
