"""Hardening tests share the fixtures of ``tests/conftest.py``; in-process ones run over the
memory store, and the Redis fault tests start their own servers."""

import pytest


@pytest.fixture
def store_kind() -> str:
    return "memory"
