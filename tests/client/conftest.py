"""Fixtures: each client test that does not care which client it drives runs against both."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from client_fakes import BlockingFacade, FakeService, config

from reward_client import AsyncRewardClient, RewardClient

ClientFor = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def client_for(request: pytest.FixtureRequest) -> Iterator[ClientFor]:
    """``client_for(fake, **config_overrides)``: a client of the parametrised kind."""
    made: list[Any] = []

    def make(fake: FakeService, **overrides: Any) -> Any:
        cfg = config(**overrides)
        client: Any
        if request.param == "sync":
            client = RewardClient(config=cfg, transport=httpx.MockTransport(fake))
        else:
            client = BlockingFacade(
                AsyncRewardClient(config=cfg, transport=httpx.MockTransport(fake))
            )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
