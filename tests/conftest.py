"""Fixtures shared by several test folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from examples.digits.service import Endpoint


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A ``python -m reward_service`` child with the in-memory store (admin token), started by
    the demo's launcher (the merge and trainer tests use it; other folders define their own)."""
    from examples.digits.service import reward_service

    if os.environ.get("DISTREWARD_URL"):
        pytest.skip("DISTREWARD_URL points at an outside service; these tests start their own")
    with reward_service(tmp_path_factory.mktemp("service") / "service.log") as endpoint:
        yield endpoint
