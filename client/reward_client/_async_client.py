"""`AsyncRewardClient`: the asyncio client.

Each public method drives its operation of `BaseRewardClient` (``_op_<name>``: the request
built, retried and decoded there) with asyncio: `_run` sends the `Call`s it yields with an
``httpx.AsyncClient`` and sleeps its `Sleep`s with ``asyncio.sleep``. The methods and
signatures are those of `RewardClient` (`_sync_client`), awaited, written out here too; their
documentation is written there only and copied onto these methods by name (`_documented_by`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from contextlib import closing
from types import TracebackType
from typing import TypeVar

import httpx

from ._base import BaseRewardClient
from ._config import FeatureSpaceLike
from ._encoding import ArrayLike
from ._protocol import Call, Done, Op, advance
from ._requests import ScoreOptions
from ._sync_client import RewardClient
from ._types import (
    CommitResult,
    CreditBatch,
    CreditForm,
    FDResult,
    Method,
    Mode,
    Readiness,
    ReferenceInfo,
    RewardBatch,
)

__all__ = ["AsyncRewardClient"]

T = TypeVar("T")
C = TypeVar("C", bound=type)


def _documented_by(source: type) -> Callable[[C], C]:
    """Give each public method of the decorated class the docstring of ``source``'s method of
    that name, so that one text documents both clients; a method ``source`` lacks keeps its
    own. A method that has both is an error: its text would silently be replaced."""

    def document(cls: C) -> C:
        for name, method in vars(cls).items():
            counterpart = getattr(source, name, None)
            if name.startswith("_") or counterpart is None:
                continue
            if method.__doc__ is not None:
                raise TypeError(f"{cls.__name__}.{name} is documented by {source.__name__}")
            method.__doc__ = counterpart.__doc__
        return cls

    return document


@_documented_by(RewardClient)
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

    async def health(self) -> bool:
        return await self._run(self._op_health())

    async def ready(self) -> Readiness:
        return await self._run(self._op_ready())

    async def wait_ready(self, timeout: float = 30.0, interval: float = 0.1) -> Readiness:
        return await self._run(self._op_wait_ready(timeout, interval))

    async def info(self, name: str) -> ReferenceInfo:
        return await self._run(self._op_info(name))

    async def list_references(self) -> list[ReferenceInfo]:
        return await self._run(self._op_list_references())

    async def put_target(
        self,
        name: str,
        mu: ArrayLike | None = None,
        sigma: ArrayLike | None = None,
        features: ArrayLike | None = None,
        *,
        stats: str | os.PathLike[str] | None = None,
        feature_space: FeatureSpaceLike | None = None,
        accept_unknown_feature_space: bool = False,
    ) -> ReferenceInfo:
        return await self._run(
            self._op_put_target(
                name,
                mu,
                sigma,
                features,
                stats=stats,
                feature_space=feature_space,
                accept_unknown_feature_space=accept_unknown_feature_space,
            )
        )

    async def put_pool(
        self,
        name: str,
        features: ArrayLike,
        chunk_rows: int | None = None,
        *,
        feature_space: FeatureSpaceLike | None = None,
    ) -> ReferenceInfo:
        return await self._run(
            self._op_put_pool(name, features, chunk_rows, feature_space=feature_space)
        )

    async def delete(self, name: str) -> None:
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
        commit_fraction: float | None = None,
        idempotency_key: str | None = None,
        feature_space: FeatureSpaceLike | None = None,
    ) -> RewardBatch:
        options = ScoreOptions(
            method=method,
            version=version,
            commit_fraction=commit_fraction,
            idempotency_key=idempotency_key,
            feature_space=feature_space,
        )
        return await self._run(
            self._op_rewards(name, groups, mode=mode, seed=seed, indices=indices, options=options)
        )

    async def credits(
        self,
        name: str,
        samples: ArrayLike,
        *,
        form: CreditForm | None = None,
        seed: int | None = None,
        row: int | None = None,
        round: str | None = None,
        method: Method | None = None,
        version: int | None = None,
        commit_fraction: float | None = None,
        idempotency_key: str | None = None,
        feature_space: FeatureSpaceLike | None = None,
    ) -> CreditBatch:
        options = ScoreOptions(
            method=method,
            version=version,
            commit_fraction=commit_fraction,
            idempotency_key=idempotency_key,
            feature_space=feature_space,
        )
        return await self._run(
            self._op_credits(
                name, samples, form=form, seed=seed, row=row, round=round, options=options
            )
        )

    async def commit(
        self,
        name: str,
        features: ArrayLike,
        idempotency_key: str | None = None,
        *,
        feature_space: FeatureSpaceLike | None = None,
    ) -> CommitResult:
        return await self._run(
            self._op_commit(name, features, idempotency_key, feature_space=feature_space)
        )

    async def fd(
        self, name: str, features: ArrayLike, *, feature_space: FeatureSpaceLike | None = None
    ) -> FDResult:
        return await self._run(self._op_fd(name, features, feature_space=feature_space))
