"""Fixtures of the trainer tests: a real reward-service process on a loopback port."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# The toy module sits beside the tests (the torchrun test's ranks import it by this path too);
# the demo's service launcher is imported from the repository root, also under plain `pytest`.
sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parent))

from examples.digits.service import Endpoint, reward_service


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The toy problems are tiny: one torch thread avoids OpenMP spin-waits on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A ``python -m reward_service`` child with the in-memory store (admin token)."""
    if os.environ.get("DISTREWARD_URL"):
        pytest.skip("DISTREWARD_URL points at an outside service; these tests start their own")
    with reward_service(tmp_path_factory.mktemp("service") / "service.log") as endpoint:
        yield endpoint
