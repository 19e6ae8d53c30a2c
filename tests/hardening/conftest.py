"""Hardening tests reuse the service tests' helpers and fixtures (``tests/service``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import pytest
from service_fixtures import (  # noqa: F401  (fixtures are found by name)
    api,
    redis_server,
    redis_url,
    rng,
    service_pair_factory,
    settings,
)


@pytest.fixture
def store_kind() -> str:
    """In-process hardening tests run over the memory store; Redis faults start their own."""
    return "memory"
