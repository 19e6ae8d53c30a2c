"""Settings from the environment and the token rules."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError
from service_support import ADMIN_TOKEN, TRAINER_TOKEN

from reward_service.settings import Settings


def test_tokens_are_required_outside_development() -> None:
    with pytest.raises(ValidationError, match="no tokens configured"):
        Settings(tokens=(), admin_tokens=())


@pytest.mark.parametrize("token", ["changeme", "short", "CHANGEME"])
def test_placeholder_or_short_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="placeholder or shorter"):
        Settings(tokens=(token,))


def test_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTREWARD_TOKENS", f"{TRAINER_TOKEN}, {TRAINER_TOKEN}x")
    monkeypatch.setenv("DISTREWARD_ADMIN_TOKENS", ADMIN_TOKEN)
    monkeypatch.setenv("DISTREWARD_PORT", "9123")
    settings = Settings()
    assert settings.tokens == (TRAINER_TOKEN, f"{TRAINER_TOKEN}x")
    assert settings.admin_tokens == (ADMIN_TOKEN,)
    assert settings.port == 9123 and settings.host == "127.0.0.1"
    assert settings.store_kind == "memory"


def test_development_without_tokens_is_open() -> None:
    settings = Settings(env="development")
    assert not settings.auth_enabled


def test_the_service_refuses_to_start_without_tokens() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTREWARD_")}
    done = subprocess.run(
        [sys.executable, "-m", "reward_service"], env=env, capture_output=True, timeout=120
    )
    assert done.returncode != 0
    assert b"no tokens configured" in done.stderr


def test_sentinels_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTREWARD_TOKENS", TRAINER_TOKEN)
    monkeypatch.setenv("DISTREWARD_REDIS_SENTINELS", "10.0.0.5:26379, redis-1.redis:26379,[::1]:1")
    settings = Settings()
    assert settings.redis_sentinels == ("10.0.0.5:26379", "redis-1.redis:26379", "[::1]:1")
    assert settings.store_kind == "redis" and settings.redis_master_name == "distreward"
    assert settings.min_replicas == 1  # a failover then loses nothing acknowledged


def test_writes_wait_for_replicas_only_where_asked() -> None:
    url = "redis://127.0.0.1:6379/0"
    assert Settings(tokens=(TRAINER_TOKEN,), redis_url=url).min_replicas == 0
    assert Settings(tokens=(TRAINER_TOKEN,), redis_url=url, redis_min_replicas=2).min_replicas == 2
    sentinels = ("127.0.0.1:26379",)
    unsafe = Settings(tokens=(TRAINER_TOKEN,), redis_sentinels=sentinels, redis_min_replicas=0)
    assert unsafe.min_replicas == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis_url": "redis://h:6379/0", "redis_sentinels": ("h:26379",)}, "not both"),
        ({"redis_sentinels": ("sentinel",)}, "'sentinel' is not host:port"),
        ({"redis_sentinels": ("h:0",)}, "'h:0' is not host:port"),
        ({"redis_min_replicas": 1}, "needs Redis replicas"),
        ({"redis_sentinels": ("h:26379",), "redis_replica_wait_seconds": 5.0}, "must be below"),
    ],
)
def test_redis_settings_that_cannot_work_are_refused(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(tokens=(TRAINER_TOKEN,), **values)
