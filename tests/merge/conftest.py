"""Fixtures of the merge tests: a real reward-service process on a loopback port."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# merge_toy sits beside the tests; the CLI test's subprocess imports it by this path too.
sys.path.insert(0, str(Path(__file__).parent))

from examples.digits.service import Endpoint, reward_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A ``python -m reward_service`` child with the in-memory store (admin token)."""
    if os.environ.get("DISTREWARD_URL"):
        pytest.skip("DISTREWARD_URL points at an outside service; these tests start their own")
    with reward_service(tmp_path_factory.mktemp("service") / "service.log") as endpoint:
        yield endpoint
