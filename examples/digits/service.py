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
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reward_client import RewardClient

__all__ = ["Endpoint", "reward_service"]

READY_TIMEOUT = 60.0  # seconds for a child service to answer /readyz


@dataclass(frozen=True)
class Endpoint:
    """Where the service listens and the (admin) token to use there."""

    url: str
    token: str

    def client(self) -> RewardClient:
        """A new blocking client of this endpoint."""
        return RewardClient(self.url, token=self.token)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(endpoint: Endpoint, child: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll ``/readyz`` until the child answers; fail fast if it exits."""
    deadline = time.monotonic() + READY_TIMEOUT
    with endpoint.client() as client:
        while not client.ready().ready:
            if child.poll() is not None:
                raise RuntimeError(f"reward service exited ({child.returncode}); see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"reward service not ready in {READY_TIMEOUT} s; see {log_path}")
            time.sleep(0.1)


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
    port = _free_port()
    token = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "DISTREWARD_HOST": "127.0.0.1",
        "DISTREWARD_PORT": str(port),
        "DISTREWARD_ADMIN_TOKENS": token,
        "DISTREWARD_TOKENS": secrets.token_urlsafe(32),
        "DISTREWARD_LOG_LEVEL": "warning",
        # d = 64 needs no thread pool; one thread keeps the service off the trainers' cores.
        "OMP_NUM_THREADS": "1",
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "reward_service"], env=env, stdout=log, stderr=log
        )
        try:
            endpoint = Endpoint(f"http://127.0.0.1:{port}", token)
            _wait_ready(endpoint, child, log_path)
            yield endpoint
        finally:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
