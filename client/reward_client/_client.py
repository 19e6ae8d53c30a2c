"""`RewardClient` (blocking) and `AsyncRewardClient` (asyncio): the I/O half.

Every public method is an operation of `BaseRewardClient` (``_op_<name>``: the signature and
docstring are written there, once) handed to the class's driver, which sends the `Call`s it
yields and sleeps the `Sleep`s. The drivers and the httpx client they send with are the only
code the two classes do not share. Pass ``transport=`` (``httpx.MockTransport``,
``httpx.ASGITransport``, ...) to talk to something other than the network.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Coroutine
from contextlib import closing
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from ._base import BaseRewardClient
from ._protocol import Call, Done, Op, Reply, Sleep, advance

__all__ = ["AsyncRewardClient", "RewardClient"]

T = TypeVar("T")
P = ParamSpec("P")
Operation = Callable[Concatenate[BaseRewardClient[Any], P], Op[T]]


def _public(method: Callable[..., Any], op: Callable[..., Any]) -> None:
    """Name ``method`` after its operation (``_op_rewards`` -> ``rewards``), with its docstring
    and signature, for ``help()`` and editors."""
    functools.update_wrapper(method, op)
    method.__name__ = method.__qualname__ = op.__name__.removeprefix("_op_")
    # The operation returns ``Op[T]``; the method returns T (or, awaited, resolves to it).
    signature = inspect.signature(op)
    returns = str(signature.return_annotation).removeprefix("Op[").removesuffix("]")
    vars(method)["__signature__"] = signature.replace(return_annotation=returns)


def _blocking(op: Operation[P, T]) -> Callable[Concatenate[RewardClient, P], T]:
    """The method of `RewardClient` that runs ``op`` to completion."""

    def method(self: RewardClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(op(self, *args, **kwargs))

    _public(method, op)
    return method


def _awaitable(
    op: Operation[P, T],
) -> Callable[Concatenate[AsyncRewardClient, P], Coroutine[Any, Any, T]]:
    """The coroutine method of `AsyncRewardClient` that runs ``op`` to completion."""

    async def method(self: AsyncRewardClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(op(self, *args, **kwargs))

    _public(method, op)
    return method


class RewardClient(BaseRewardClient[httpx.BaseTransport]):
    """Blocking client of the distreward service; threads may share one.

    >>> with RewardClient("http://reward:8000", token=token) as client:  # doctest: +SKIP
    ...     batch = client.rewards("inception", features.reshape(G, K, d))
    ...     advantages = batch.advantages
    """

    def _open(self, transport: httpx.BaseTransport | None) -> None:
        self._http = httpx.Client(transport=transport, **self._http_options())

    def _run(self, op: Op[T]) -> T:
        """Drive ``op``: send what it asks, sleep what it asks, return what it returns."""
        with closing(op):
            step = advance(op, None)
            while not isinstance(step, Done):
                reply = self._send(step) if isinstance(step, Call) else self._wait(step)
                step = advance(op, reply)
            return step.value

    def _send(self, call: Call) -> httpx.Response | httpx.RequestError:
        try:
            return self._http.send(call.build(self._http))
        except httpx.RequestError as exc:  # judged (and translated) by the operation
            return exc

    @staticmethod
    def _wait(sleep: Sleep) -> Reply:
        time.sleep(sleep.seconds)
        return None

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

    health = _blocking(BaseRewardClient._op_health)
    ready = _blocking(BaseRewardClient._op_ready)
    wait_ready = _blocking(BaseRewardClient._op_wait_ready)
    info = _blocking(BaseRewardClient._op_info)
    list_references = _blocking(BaseRewardClient._op_list_references)
    put_target = _blocking(BaseRewardClient._op_put_target)
    put_pool = _blocking(BaseRewardClient._op_put_pool)
    delete = _blocking(BaseRewardClient._op_delete)
    rewards = _blocking(BaseRewardClient._op_rewards)
    credits = _blocking(BaseRewardClient._op_credits)
    commit = _blocking(BaseRewardClient._op_commit)
    fd = _blocking(BaseRewardClient._op_fd)


class AsyncRewardClient(BaseRewardClient[httpx.AsyncBaseTransport]):
    """asyncio client of the distreward service; the same methods as `RewardClient`,
    awaited. Many requests may be in flight at once on one client."""

    def _open(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def _run(self, op: Op[T]) -> T:
        """Drive ``op``: send what it asks, sleep what it asks, return what it returns."""
        with closing(op):
            step = advance(op, None)
            while not isinstance(step, Done):
                if isinstance(step, Call):
                    step = advance(op, await self._send(step))
                else:
                    await asyncio.sleep(step.seconds)
                    step = advance(op, None)
            return step.value

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

    health = _awaitable(BaseRewardClient._op_health)
    ready = _awaitable(BaseRewardClient._op_ready)
    wait_ready = _awaitable(BaseRewardClient._op_wait_ready)
    info = _awaitable(BaseRewardClient._op_info)
    list_references = _awaitable(BaseRewardClient._op_list_references)
    put_target = _awaitable(BaseRewardClient._op_put_target)
    put_pool = _awaitable(BaseRewardClient._op_put_pool)
    delete = _awaitable(BaseRewardClient._op_delete)
    rewards = _awaitable(BaseRewardClient._op_rewards)
    credits = _awaitable(BaseRewardClient._op_credits)
    commit = _awaitable(BaseRewardClient._op_commit)
    fd = _awaitable(BaseRewardClient._op_fd)
