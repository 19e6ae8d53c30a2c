"""The reward service the demo talks to: one at ``DISTREWARD_URL``, or a child process.

With ``DISTREWARD_URL`` set, the demo uses that service with the admin token from
``DISTREWARD_ADMIN_TOKEN``. Otherwise it starts ``python -m reward_service`` on a free loopback
port with freshly generated tokens (store: in memory, or Redis when ``DISTREWARD_REDIS_URL`` is
set; the child inherits the environment) and stops it on exit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reward_client import RewardClient
from reward_client.features import FeatureSpace
from support.launch import ServiceProcess

__all__ = ["Endpoint", "reward_service"]

READY_TIMEOUT = 60.0  # seconds for a child service to answer /readyz


@dataclass(frozen=True)
class Endpoint:
    """Where the service listens and the (admin) token to use there."""

    url: str
    token: str

    def client(self, feature_space: FeatureSpace | None = None) -> RewardClient:
        """A new blocking client of this endpoint, posting features of ``feature_space``."""
        return RewardClient(self.url, token=self.token, feature_space=feature_space)


@contextlib.contextmanager
def reward_service(log_path: Path) -> Iterator[Endpoint]:
    """Yield an endpoint of a ready service; a child service logs to ``log_path``."""
    url = os.environ.get("DISTREWARD_URL", "")
    if url:
        token = os.environ.get("DISTREWARD_ADMIN_TOKEN", "")
        if not token:
            raise SystemExit("DISTREWARD_URL is set: also set DISTREWARD_ADMIN_TOKEN")
        yield Endpoint(url, token)
        return
    token = secrets.token_urlsafe(32)
    env = {
        "DISTREWARD_ADMIN_TOKENS": token,
        "DISTREWARD_TOKENS": secrets.token_urlsafe(32),
        "DISTREWARD_LOG_LEVEL": "warning",
        # d = 64 needs no thread pool; one thread keeps the service off the trainers' cores.
        "OMP_NUM_THREADS": "1",
    }
    child = ServiceProcess(log_path, env)
    try:
        child.wait_ready(READY_TIMEOUT, probe="/readyz")
        yield Endpoint(child.url, token)
    finally:
        child.stop(timeout=10)
