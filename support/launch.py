"""Local processes on loopback: ``python -m reward_service`` as a child process, and a
``redis-server`` for it to share. The digits demo starts its service with this module; tests and
benchmarks start services and Redis with it too, so that there is one way to find a free port,
wait for readiness and stop a child.

Import-light on purpose (standard library and httpx only): importing it pulls in neither FastAPI
nor torch, and the children it starts run in their own interpreters.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

__all__ = ["RedisServer", "ServiceProcess", "free_port", "stop_process"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _answers(port: int, probe: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(probe)
            return sock.recv(64).startswith(expect)
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` on a free loopback port; ``persistent`` keeps an append-only file
    (fsync always) so that a stop/start on the same port loses nothing acknowledged; ``options``
    are further ``redis-server`` arguments (``--replicaof HOST PORT``, ...)."""

    def __init__(
        self, directory: Path, *, persistent: bool = False, options: Sequence[str] = ()
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found: run `bash scripts/install_redis.sh` (as root)"
            )
        self.binary = binary
        self.directory = directory
        self.persistent = persistent
        self.options = tuple(options)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["yes", "--appendfsync", "always"] if self.persistent else ["no"]
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.directory),
                "--appendonly",
                *persistence,
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers(self.port, b"PING\r\n", b"+PONG"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def flushall(self) -> None:
        if not _answers(self.port, b"FLUSHALL\r\n", b"+OK"):
            raise RuntimeError(f"FLUSHALL on redis-server port {self.port} failed")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: flushes the append-only file, then exits
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown at all; with ``persistent`` (fsync always) nothing acknowledged
        is lost."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class ServiceProcess:
    """``python -m reward_service`` on a free loopback port, started at once, configured by
    ``env`` (``DISTREWARD_*`` settings, over this process's environment); its output goes to
    ``log_path``. After :meth:`stop` or :meth:`kill`, :meth:`start` starts it again on the same
    port, appending to the log."""

    def __init__(self, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DISTREWARD_HOST": "127.0.0.1",
            **(env or {}),
            "DISTREWARD_PORT": str(self.port),
        }
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = self._spawn("wb")

    def _spawn(self, mode: str) -> subprocess.Popen[bytes]:
        with self.log_path.open(mode) as log:  # the child holds its own copy of the handle
            return subprocess.Popen(
                [sys.executable, "-m", "reward_service"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self) -> None:
        """Start the service again (same port and settings) once the last one has exited."""
        self.process = self._spawn("ab")

    def wait_ready(self, timeout: float = 60.0, probe: str = "/healthz") -> None:
        """Poll ``probe`` until it answers 200 (``/healthz``: started; ``/readyz``: the store
        answers too); fail fast, with the log's tail, when the child exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"service exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.url + probe, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"service did not come up in {timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed replica dies."""
        self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        stop_process(self.process, timeout)
