"""Helpers shared by the service tests: a real ``redis-server`` on a free loopback port, service
processes, and a small API client with one method per route in either wire format."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from reward_service.settings import Settings

TRAINER_TOKEN = "trainer-token-for-tests-0001"
ADMIN_TOKEN = "admin-token-for-tests-000001"
D = 8
N = 64
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int, probe: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(probe)
            return sock.recv(64).startswith(expect)
    except OSError:
        return False


class RedisServer:
    """One ``redis-server``; ``persistent`` keeps an append-only file (fsync always) so that a
    stop/start on the same port loses nothing acknowledged."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not found: run `bash scripts/install_redis.sh` (as root)")
        self.binary = binary
        self.directory = directory
        self.persistent = persistent
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["yes", "--appendfsync", "always"] if self.persistent else ["no"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.directory), "--appendonly", *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers(self.port, b"PING\r\n", b"+PONG"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def flushall(self) -> None:
        assert _answers(self.port, b"FLUSHALL\r\n", b"+OK"), "FLUSHALL failed"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: flushes the append-only file, then exits
            self.process.wait(timeout=10)
            self.process = None


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tokens": (TRAINER_TOKEN,),
        "admin_tokens": (ADMIN_TOKEN,),
        "max_body_bytes": 4 * 1024 * 1024,
        "max_groups": 32,
        "max_group_size": 32,
    }
    values.update(overrides)
    return Settings(**values)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class Api:
    """Thin helper over an ``httpx.AsyncClient``: one method per route, either wire format."""

    def __init__(self, client: httpx.AsyncClient, token: str | None = ADMIN_TOKEN) -> None:
        self.client = client
        self.token = token

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        token = token or self.token
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return {**auth, **extra}

    async def send(
        self,
        method: str,
        path: str,
        array: np.ndarray | None = None,
        *,
        binary: bool = True,
        json_fields: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        """``array`` goes as ``.npy`` (``binary``) or under ``json_fields`` key ``"_array"``."""
        all_headers = self.headers(token, **(headers or {}))
        if array is not None and binary:
            all_headers["Content-Type"] = "application/x-npy"
            return await self.client.request(
                method, path, content=npy(array), params=params, headers=all_headers
            )
        if json_fields is not None or array is not None:
            body = dict(json_fields or {})
            return await self.client.request(
                method, path, json=body, params=params, headers=all_headers
            )
        return await self.client.request(method, path, params=params, headers=all_headers)

    async def create(self, name: str, rng: np.random.Generator, *, binary: bool = True) -> dict:
        """A reference with a target fitted to shifted features and a pool of N rows."""
        real = rng.normal(0.3, 1.0, size=(4 * N, D))
        pool = rng.normal(size=(N, D)).astype(np.float32)
        if binary:
            r = await self.send("PUT", f"/v1/references/{name}/target", real)
        else:
            r = await self.send("PUT", f"/v1/references/{name}/target", binary=False,
                                json_fields={"features": real.tolist()})
        assert r.status_code == 200, r.text
        if binary:
            r = await self.send("PUT", f"/v1/references/{name}/pool", pool)
        else:
            r = await self.send("PUT", f"/v1/references/{name}/pool", binary=False,
                                json_fields={"features": pool.tolist()})
        assert r.status_code == 200, r.text
        return r.json()

    async def rewards(
        self, name: str, groups: np.ndarray, *, binary: bool = True, **params: Any
    ) -> httpx.Response:
        path = f"/v1/references/{name}/rewards"
        if binary:
            return await self.send("POST", path, groups, params=params)
        return await self.send("POST", path, binary=False,
                               json_fields={"groups": groups.tolist(), **params})

    async def commit(
        self, name: str, rows: np.ndarray, key: str, *, binary: bool = True
    ) -> httpx.Response:
        path = f"/v1/references/{name}/commit"
        if binary:
            return await self.send("POST", path, rows, headers={"Idempotency-Key": key})
        return await self.send("POST", path, binary=False,
                               json_fields={"features": rows.tolist(), "idempotency_key": key})

    async def info(self, name: str) -> httpx.Response:
        return await self.send("GET", f"/v1/references/{name}")


class ServiceProcess:
    """``python -m reward_service`` as a subprocess on a free port."""

    def __init__(self, redis_url: str, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            **os.environ,
            "DISTREWARD_REDIS_URL": redis_url,
            "DISTREWARD_PORT": str(self.port),
            "DISTREWARD_TOKENS": TRAINER_TOKEN,
            "DISTREWARD_ADMIN_TOKENS": ADMIN_TOKEN,
            "DISTREWARD_REDIS_TIMEOUT_SECONDS": "1",
            **env,
        }
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reward_service"],
            env=environment,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("service did not come up")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
