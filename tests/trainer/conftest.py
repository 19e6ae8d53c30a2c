"""Fixtures of the trainer tests; their ``service`` fixture (a real reward-service process on a
loopback port) is in ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The toy problems are tiny: one torch thread avoids OpenMP spin-waits on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
