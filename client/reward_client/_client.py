"""`RewardClient` (blocking) and `AsyncRewardClient` (asyncio): the I/O half.

Each public method hands one operation of `BaseRewardClient` to the class's driver, which
sends the `Call`s it yields and sleeps the `Sleep`s; that driver is the only code the two
classes do not share. Pass ``transport=`` (``httpx.MockTransport``, ``httpx.ASGITransport``,
...) to talk to something other than the network.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import TypeVar

import httpx

from ._base import BaseRewardClient
from ._config import ClientConfig
from ._encoding import ArrayLike
from ._protocol import Call, Op, Reply
from ._types import CommitResult, FDResult, Method, Mode, Readiness, ReferenceInfo, RewardBatch

__all__ = ["AsyncRewardClient", "RewardClient"]

T = TypeVar("T")


class RewardClient(BaseRewardClient):
    """Blocking client of the distreward service; threads may share one.

    >>> with RewardClient("http://reward:8000", token=token) as client:  # doctest: +SKIP
    ...     batch = client.rewards("inception", features.reshape(G, K, d))
    ...     advantages = batch.advantages
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        config: ClientConfig | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token, config=config)
        self._http = httpx.Client(transport=transport, **self._http_options())

    def _run(self, op: Op[T]) -> T:
        """Drive ``op``: send what it asks, sleep what it asks, return what it returns."""
        reply: Reply = None
        try:
            while True:
                step = op.send(reply)
                if isinstance(step, Call):
                    reply = self._send(step)
                else:
                    time.sleep(step.seconds)
                    reply = None
        except StopIteration as done:
            result: T = done.value  # the operation's return value (untyped on StopIteration)
            return result
        finally:
            op.close()

    def _send(self, call: Call) -> httpx.Response | httpx.RequestError:
        try:
            return self._http.send(call.build(self._http))
        except httpx.RequestError as exc:  # judged (and translated) by the operation
            return exc

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def health(self) -> bool:
        """Whether the service process answers (``/healthz``). One try; never raises."""
        return self._run(self._op_health())

    def ready(self) -> Readiness:
        """Whether the service can serve (``/readyz``: store reachable). One try; never raises
        for an unreachable service (``ready`` is then false)."""
        return self._run(self._op_ready())

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.1) -> Readiness:
        """Poll ``/readyz`` until ready; `RequestTimeout` after ``timeout`` seconds."""
        return self._run(self._op_wait_ready(timeout, interval))

    def info(self, name: str) -> ReferenceInfo:
        """A reference's d, pool size n, pool version and base FD."""
        return self._run(self._op_info(name))

    def list_references(self) -> list[ReferenceInfo]:
        """Every reference the service holds."""
        return self._run(self._op_list())

    def put_target(
        self,
        name: str,
        mu: ArrayLike | None = None,
        sigma: ArrayLike | None = None,
        features: ArrayLike | None = None,
    ) -> ReferenceInfo:
        """Set the target: statistics ``mu`` (d,) and ``sigma`` (d, d) (sent in float64), or
        raw ``features`` (n, d) for the service to fit. Creates the reference. Admin."""
        return self._run(self._op_put_target(name, mu, sigma, features))

    def put_pool(
        self, name: str, features: ArrayLike, chunk_rows: int | None = None
    ) -> ReferenceInfo:
        """Replace the pool with ``features`` (N, d) and publish it (a new version). Uploaded
        in chunks of ``chunk_rows`` rows (by default about ``config.chunk_bytes`` each);
        an interrupted upload starts over rather than risk staging a chunk twice. Admin."""
        return self._run(self._op_put_pool(name, features, chunk_rows))

    def delete(self, name: str) -> None:
        """Delete a reference. Admin. (A delete retried after its answer was lost raises
        `NotFound`: the first attempt did the work.)"""
        self._run(self._op_delete(name))

    def rewards(
        self,
        name: str,
        groups: ArrayLike,
        *,
        mode: Mode | None = None,
        seed: int | None = None,
        indices: ArrayLike | None = None,
        method: Method | None = None,
        version: int | None = None,
    ) -> RewardBatch:
        """Distribution-wise rewards of ``groups`` (G, K, d): ``base_fd - FD`` after each group
        replaces K pool rows.

        Args:
            mode: ``shared`` (service default: every group replaces the same rows),
                ``independent``, or ``indices`` (implied by ``indices``).
            seed: Makes the replaced rows reproducible; the service draws and echoes one if None.
            indices: Rows to replace: (K,) for all groups, or (G, K) per group (sent as JSON).
            method: ``lowrank`` (service default) or ``exact``.
            version: Pool version to pin (overrides ``config.version``); a different version on
                the service raises `VersionMismatch`.
        """
        return self._run(self._op_rewards(name, groups, mode, seed, indices, method, version))

    def commit(
        self, name: str, features: ArrayLike, idempotency_key: str | None = None
    ) -> CommitResult:
        """Roll the pool: ``features`` (K, d) replace its oldest rows. The idempotency key (a
        fresh uuid4 when None) is reused on every retry, so the commit applies once."""
        return self._run(self._op_commit(name, features, idempotency_key))

    def fd(self, name: str, features: ArrayLike) -> FDResult:
        """Fréchet distance of ``features`` (n >= 2, d) to the reference's target."""
        return self._run(self._op_fd(name, features))


class AsyncRewardClient(BaseRewardClient):
    """asyncio client of the distreward service; the same methods as `RewardClient`,
    awaited. Many requests may be in flight at once on one client."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        config: ClientConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token, config=config)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def _run(self, op: Op[T]) -> T:
        """Drive ``op``: send what it asks, sleep what it asks, return what it returns."""
        reply: Reply = None
        try:
            while True:
                step = op.send(reply)
                if isinstance(step, Call):
                    reply = await self._send(step)
                else:
                    await asyncio.sleep(step.seconds)
                    reply = None
        except StopIteration as done:
            result: T = done.value  # the operation's return value (untyped on StopIteration)
            return result
        finally:
            op.close()

    async def _send(self, call: Call) -> httpx.Response | httpx.RequestError:
        try:
            return await self._http.send(call.build(self._http))
        except httpx.RequestError as exc:  # judged (and translated) by the operation
            return exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def health(self) -> bool:
        """See `RewardClient.health`."""
        return await self._run(self._op_health())

    async def ready(self) -> Readiness:
        """See `RewardClient.ready`."""
        return await self._run(self._op_ready())

    async def wait_ready(self, timeout: float = 30.0, interval: float = 0.1) -> Readiness:
        """See `RewardClient.wait_ready`."""
        return await self._run(self._op_wait_ready(timeout, interval))

    async def info(self, name: str) -> ReferenceInfo:
        """See `RewardClient.info`."""
        return await self._run(self._op_info(name))

    async def list_references(self) -> list[ReferenceInfo]:
        """See `RewardClient.list_references`."""
        return await self._run(self._op_list())

    async def put_target(
        self,
        name: str,
        mu: ArrayLike | None = None,
        sigma: ArrayLike | None = None,
        features: ArrayLike | None = None,
    ) -> ReferenceInfo:
        """See `RewardClient.put_target`."""
        return await self._run(self._op_put_target(name, mu, sigma, features))

    async def put_pool(
        self, name: str, features: ArrayLike, chunk_rows: int | None = None
    ) -> ReferenceInfo:
        """See `RewardClient.put_pool`."""
        return await self._run(self._op_put_pool(name, features, chunk_rows))

    async def delete(self, name: str) -> None:
        """See `RewardClient.delete`."""
        await self._run(self._op_delete(name))

    async def rewards(
        self,
        name: str,
        groups: ArrayLike,
        *,
        mode: Mode | None = None,
        seed: int | None = None,
        indices: ArrayLike | None = None,
        method: Method | None = None,
        version: int | None = None,
    ) -> RewardBatch:
        """See `RewardClient.rewards`."""
        return await self._run(self._op_rewards(name, groups, mode, seed, indices, method, version))

    async def commit(
        self, name: str, features: ArrayLike, idempotency_key: str | None = None
    ) -> CommitResult:
        """See `RewardClient.commit`."""
        return await self._run(self._op_commit(name, features, idempotency_key))

    async def fd(self, name: str, features: ArrayLike) -> FDResult:
        """See `RewardClient.fd`."""
        return await self._run(self._op_fd(name, features))
