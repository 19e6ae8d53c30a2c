"""What the sync and the async client share: every operation of the contract, without the I/O.

`BaseRewardClient` holds the settings and what a client remembers between calls, and runs each
operation as a generator in the vocabulary of `_protocol`: the request built by `_requests`,
sent through the retry loop of `_retry`, the answer decoded by `_decode`. Operation
``_op_<name>`` is what the public method ``<name>`` of `RewardClient` (`_sync_client`) and of
`AsyncRewardClient` (`_async_client`) drives; the arguments' defaults and the documentation
are the public methods'.
"""

from __future__ import annotations

import abc
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import httpx

from . import _decode as decode
from . import _requests as build
from . import _retry as retry
from ._config import ClientConfig, FeatureSpaceLike, feature_space_id
from ._encoding import ArrayLike
from ._exceptions import ProtocolError, RequestTimeout
from ._freshness import FreshnessWatch
from ._protocol import Call, Op, Sleep
from ._types import (
    CommitResult,
    CreditBatch,
    CreditForm,
    FDResult,
    Mode,
    Readiness,
    ReferenceInfo,
    RewardBatch,
)

__all__ = ["BaseRewardClient", "TransportT"]

TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
ScoredT = TypeVar("ScoredT", RewardBatch, CreditBatch)


class ScoredRequest(Protocol):
    """The builder of a rewards or credits request, all but its shared part bound."""

    def __call__(self, *, options: build.ScoreOptions, after: int | None) -> Call: ...


class BaseRewardClient(abc.ABC, Generic[TransportT]):
    """Settings, remembered versions and the operations, for both clients.

    Args:
        base_url: Overrides ``config.base_url``.
        token: Overrides ``config.token``.
        feature_space: Overrides ``config.feature_space``: the space of the features this
            client posts, an identifier or a `features.FeatureSpace` (``extractor.feature_space``).
        config: All settings; by default `ClientConfig.from_env` (``DISTREWARD_URL``,
            ``DISTREWARD_TOKEN``, ``DISTREWARD_FEATURE_SPACE``).
        transport: Sends the requests instead of the network (``httpx.MockTransport``,
            ``httpx.ASGITransport``, ...).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        feature_space: FeatureSpaceLike | None = None,
        config: ClientConfig | None = None,
        transport: TransportT | None = None,
    ) -> None:
        config = config if config is not None else ClientConfig.from_env()
        if base_url is not None:
            config = replace(config, base_url=base_url)
        if token is not None:
            config = replace(config, token=token)
        if feature_space is not None:
            config = replace(config, feature_space=feature_space_id(feature_space))
        self.config = config
        self._random = random.Random()  # the retries' jitter
        self._freshness = FreshnessWatch()
        # Per reference: the newest version this client's own commits made, which its next
        # rewards and credits must see (read your writes; trainers call from thread pools).
        self._written: dict[str, int] = {}
        self._written_lock = threading.Lock()
        self._open(transport)

    @abc.abstractmethod
    def _open(self, transport: TransportT | None) -> None:
        """Create the httpx client the subclass sends with."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.base_url!r})"

    def _http_options(self) -> dict[str, Any]:
        """Keyword arguments for the httpx client a subclass owns."""
        headers = {"Accept": "application/json", "User-Agent": "distreward-client"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        return {
            "base_url": self.config.base_url,
            "headers": headers,
            "timeout": self.config.timeout,
        }

    # -- what the client remembers ------------------------------------------------------------

    def _wrote(self, name: str, version: int) -> None:
        with self._written_lock:
            self._written[name] = max(version, self._written.get(name, version))

    def _after(self, name: str) -> int | None:
        """The version this client's next rewards or credits of ``name`` must hold."""
        if not self.config.read_your_writes:
            return None
        with self._written_lock:
            return self._written.get(name)

    # -- sending ------------------------------------------------------------------------------

    def _json(self, call: Call) -> Op[Mapping[str, Any]]:
        """Send ``call`` under the retry policy; its answer, a JSON object."""
        response = yield from retry.exchange(call, self.config, self._random)
        try:
            body = response.json()
        except ValueError as exc:
            raise ProtocolError(f"{response.request.url.path}: answer is not JSON") from exc
        if not isinstance(body, dict):
            raise ProtocolError(f"{response.request.url.path}: answer is not a JSON object")
        return body

    # -- operations ---------------------------------------------------------------------------

    def _op_info(self, name: str) -> Op[ReferenceInfo]:
        body = yield from self._json(build.info(name))
        return decode.reference_info(body)

    def _op_list_references(self) -> Op[list[ReferenceInfo]]:
        body = yield from self._json(build.references())
        return decode.reference_list(body)

    def _op_delete(self, name: str) -> Op[None]:
        yield from retry.exchange(build.delete(name), self.config, self._random)

    def _op_put_target(
        self,
        name: str,
        mu: ArrayLike | None,
        sigma: ArrayLike | None,
        features: ArrayLike | None,
        *,
        stats: str | os.PathLike[str] | None,
        feature_space: FeatureSpaceLike | None,
        accept_unknown_feature_space: bool,
    ) -> Op[ReferenceInfo]:
        call = build.target(
            self.config,
            name,
            mu,
            sigma,
            features,
            stats=stats,
            feature_space=feature_space,
            accept_unknown_feature_space=accept_unknown_feature_space,
        )
        body = yield from self._json(call)
        return decode.reference_info(body)

    def _op_put_pool(
        self,
        name: str,
        features: ArrayLike,
        chunk_rows: int | None,
        *,
        feature_space: FeatureSpaceLike | None,
    ) -> Op[ReferenceInfo]:
        """An upload whose POST may have been applied (a continuation chunk staged twice)
        starts over from its PUT."""
        upload = build.pool(self.config, name, features, chunk_rows, feature_space=feature_space)
        return (
            yield from retry.restarting(
                lambda: self._upload_pool(name, upload),
                f"pool upload of {name}",
                self.config,
                self._random,
            )
        )

    def _upload_pool(self, name: str, upload: build.PoolUpload) -> Op[ReferenceInfo]:
        """Send the chunks in order; check the service's staged row count after every chunk."""
        body: Mapping[str, Any] = {}
        for chunk in upload.requests():
            body = yield from self._json(chunk.call)
            if not chunk.final and body.get("staged_rows") != chunk.staged_rows:
                raise ProtocolError(
                    f"pool upload of {name}: service staged {body.get('staged_rows')} rows, "
                    f"client sent {chunk.staged_rows}"
                )
        return decode.reference_info(body)

    def _op_rewards(
        self,
        name: str,
        groups: ArrayLike,
        *,
        mode: Mode | None,
        seed: int | None,
        indices: ArrayLike | None,
        options: build.ScoreOptions,
    ) -> Op[RewardBatch]:
        request = partial(
            build.rewards, self.config, name, groups, mode=mode, seed=seed, indices=indices
        )
        return (yield from self._scoring(name, options, request, decode.reward_batch))

    def _op_credits(
        self,
        name: str,
        samples: ArrayLike,
        *,
        form: CreditForm | None,
        seed: int | None,
        row: int | None,
        round: str | None,
        options: build.ScoreOptions,
    ) -> Op[CreditBatch]:
        request = partial(
            build.credits, self.config, name, samples, form=form, seed=seed, row=row, round=round
        )
        return (yield from self._scoring(name, options, request, decode.credit_batch))

    def _scoring(
        self,
        name: str,
        options: build.ScoreOptions,
        request: ScoredRequest,
        answer: Callable[[Mapping[str, Any], str | None], ScoredT],
    ) -> Op[ScoredT]:
        """A rewards or credits operation: ``request(options=..., after=...)`` sent with the
        idempotency key fixed for every retry and the version this client's own commits made
        (read your writes); the ``answer`` decoded, its commit remembered and its pool's
        freshness watched."""
        options = options.keyed()
        body = yield from self._json(request(options=options, after=self._after(name)))
        batch = answer(body, options.idempotency_key)
        if batch.committed is not None:
            self._wrote(name, batch.committed.version)
        if batch.freshness is not None:
            self._freshness.observe(name, batch.freshness, self.config)
        return batch

    def _op_commit(
        self,
        name: str,
        features: ArrayLike,
        idempotency_key: str | None,
        *,
        feature_space: FeatureSpaceLike | None,
    ) -> Op[CommitResult]:
        key = build.fresh_key(idempotency_key)
        call = build.commit(self.config, name, features, key, feature_space=feature_space)
        body = yield from self._json(call)
        result = decode.commit_result(body, key)
        self._wrote(name, result.version)
        return result

    def _op_fd(
        self, name: str, features: ArrayLike, *, feature_space: FeatureSpaceLike | None
    ) -> Op[FDResult]:
        call = build.fd(self.config, name, features, feature_space=feature_space)
        body = yield from self._json(call)
        return decode.fd_result(body)

    # -- probes: one attempt, never raise for an unreachable service, for polling loops ------

    def _op_health(self) -> Op[bool]:
        reply = yield build.health()
        return isinstance(reply, httpx.Response) and reply.status_code == 200

    def _op_ready(self) -> Op[Readiness]:
        reply = yield build.ready()
        if not isinstance(reply, httpx.Response):
            return Readiness(ready=False, store=None, references=None)
        try:
            body = reply.json()
        except ValueError:
            body = {}
        return decode.readiness(reply.status_code == 200, body if isinstance(body, dict) else {})

    def _op_wait_ready(self, timeout: float, interval: float) -> Op[Readiness]:
        deadline = time.monotonic() + timeout
        while True:
            state = yield from self._op_ready()
            if state.ready:
                return state
            if time.monotonic() >= deadline:
                raise RequestTimeout(f"{self.config.base_url} not ready after {timeout} s")
            yield Sleep(interval)
