"""Fixtures of the cluster tests: two real reward-service processes on loopback with a small
reference, and a real Prometheus scraping them while a bounded load runs."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from cluster_support import (
    Child,
    Tokens,
    drive_load,
    query,
    start_prometheus,
    start_service,
    upload_reference,
    wait_for,
)

SCRAPE_TIMEOUT = 30.0  # seconds for Prometheus to have scraped both services


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    return Tokens(trainer=secrets.token_urlsafe(32), admin=secrets.token_urlsafe(32))


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory, tokens: Tokens) -> Iterator[list[Child]]:
    """Two ``python -m reward_service`` processes (embedded stores), each with the reference."""
    folder = tmp_path_factory.mktemp("services")
    started = [start_service(f"reward-service-{i}", folder, tokens) for i in range(2)]
    try:
        for child in started:
            child.wait_ready("/readyz")
            upload_reference(child.url, tokens)
        yield started
    finally:
        for child in started:
            child.stop()


@pytest.fixture(scope="session")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, services: list[Child], tokens: Tokens
) -> Iterator[Child]:
    """Prometheus scraping both services every second; the load runs once both are scraped."""
    child = start_prometheus(
        tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{s.port}" for s in services]
    )
    try:
        child.wait_ready("/-/ready")
        wait_for(
            "Prometheus scraping both services",
            lambda: len(query(child, 'up{job="reward-service"} == 1')) == len(services),
            SCRAPE_TIMEOUT,
        )
        drive_load([s.url for s in services], tokens)
        yield child
    finally:
        child.stop()
