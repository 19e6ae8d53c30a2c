"""Fixtures of the trainer tests; their ``service`` fixture (a real reward-service process on a
loopback port) is in ``tests/conftest.py``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# The toy module sits beside the tests (the torchrun test's ranks import it by this path too);
# the demo's service launcher is imported from the repository root, also under plain `pytest`.
sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The toy problems are tiny: one torch thread avoids OpenMP spin-waits on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

