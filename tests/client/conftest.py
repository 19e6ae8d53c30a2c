"""Fixtures of the client's tests (this folder and the trainer packages' folders below it):
each client test that does not care which client it drives runs against both, and torch, where
a test module imported it, runs on one thread.

The support modules of several folders (``client_fakes``, ``trainer_toy``) live here: pytest puts
this folder on ``sys.path`` when it loads this file, before any test below it is imported.
"""

from __future__ import annotations

import sys
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


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The trainers' toy problems are tiny: one torch thread avoids OpenMP spin-waits on a busy
    CPU. Torch is not imported for this: the client itself is tested without it."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
