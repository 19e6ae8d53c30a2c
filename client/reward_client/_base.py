"""What the sync and the async client share: all of it but the I/O.

`BaseRewardClient` builds the requests of the contract (docs/API.md), encodes the arrays,
applies the retry policy of `_retry` and decodes the answers, as operations in the
vocabulary of `_protocol`; the two subclasses in `_client` only drive them. Operation
``_op_<name>`` is the public method ``<name>`` of both clients: its signature and docstring
are the method's.
"""

from __future__ import annotations

import abc
import logging
import math
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
import numpy.typing as npt

from . import _decode as decode
from ._config import ClientConfig, FeatureSpaceLike, feature_space_id
from ._encoding import ArrayLike, as_numpy, npy_bytes, read_stats, stats_npz, wire_array
from ._exceptions import ProtocolError, RequestTimeout, RewardClientError, TransportError
from ._protocol import Call, Op, Sleep
from ._retry import backoff_delay, error_for_reply, failure_kind
from ._types import (
    CommitResult,
    CreditBatch,
    CreditForm,
    FDResult,
    Method,
    Mode,
    PoolFreshness,
    Readiness,
    ReferenceInfo,
    RewardBatch,
)

__all__ = ["BaseRewardClient", "TransportT"]

logger = logging.getLogger("reward_client")

NPY = "application/x-npy"
NPZ = "application/x-npz"
FEATURE_SPACE = "Feature-Space"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class _MaybeApplied(TransportError):
    """A request that must not be applied twice failed in a way that may have applied it
    (read timeout, connection lost after sending, gateway 502 / 504). The operation that sent
    it decides how to recover; resending the same request is not an option."""


TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)


class BaseRewardClient(abc.ABC, Generic[TransportT]):
    """Settings, request building, retries and decoding for both clients.

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
        self._random = random.Random()
        # Per reference: credits answers in a row against a pool that has not moved, and
        # whether that was reported (trainers call from thread pools: guarded).
        self._stalled: dict[str, int] = {}
        self._stall_reported: set[str] = set()
        self._stall_lock = threading.Lock()
        # Per reference: the newest version this client's own commits made, which its next
        # rewards and credits must see (read your writes).
        self._written: dict[str, int] = {}
        self._written_lock = threading.Lock()
        self._open(transport)

    def _wrote(self, name: str, version: int) -> None:
        with self._written_lock:
            self._written[name] = max(version, self._written.get(name, version))

    def _after(self, name: str) -> int | None:
        """The version this client's next rewards or credits of ``name`` must hold."""
        if not self.config.read_your_writes:
            return None
        with self._written_lock:
            return self._written.get(name)

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

    # -- retries ----------------------------------------------------------------------------

    def _exchange(self, call: Call) -> Op[httpx.Response]:
        """Send ``call`` until it gets a 2xx; retry what is worth retrying, raise the rest.

        Retried: 502 / 503 / 504 and failures to reach the service, up to
        ``config.retries`` times, waiting an exponentially growing, jittered delay (at least
        what ``Retry-After`` asks for). Never retried: any 4xx, other 5xx. A call that is not
        replay-safe is not resent after a failure that may have applied it: that raises
        `_MaybeApplied` for the operation to recover from as a whole.
        """
        attempt = 0
        while True:
            reply = yield call
            if isinstance(reply, httpx.Response) and reply.is_success:
                return reply
            error = error_for_reply(call, reply)
            cause = reply if isinstance(reply, httpx.RequestError) else None
            kind = failure_kind(reply)
            if kind == "ambiguous" and not call.replay_safe:
                message = f"{error} (not resent: it may have been applied)"
                raise _MaybeApplied(message) from (error if cause is None else cause)
            attempt += 1
            if kind == "final" or attempt > self.config.retries:
                raise error from cause
            delay = self._delay(attempt, error)
            logger.warning(
                "%s; retry %d of %d in %.2f s", error, attempt, self.config.retries, delay
            )
            yield Sleep(delay)

    def _delay(self, attempt: int, error: RewardClientError | None) -> float:
        return backoff_delay(
            attempt,
            error,
            backoff=self.config.backoff,
            max_backoff=self.config.max_backoff,
            rng=self._random,
        )

    # -- request building -------------------------------------------------------------------

    def _features(self, x: ArrayLike, ndim: int, name: str) -> npt.NDArray[Any]:
        return wire_array(as_numpy(x, ndim=ndim, name=name), self.config.wire_dtype, name=name)

    def _space_header(self, feature_space: FeatureSpaceLike | None) -> dict[str, str]:
        """The ``Feature-Space`` header of a request that posts features: the call's space,
        else the config's; none when neither is set."""
        space = feature_space_id(feature_space) or self.config.feature_space
        return {} if space is None else {FEATURE_SPACE: space}

    def _array_call(
        self,
        method: str,
        path: str,
        array: npt.NDArray[Any],
        *,
        field: str,
        params: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        binary: bool | None = None,
        replay_safe: bool = True,
        version_pinned: bool = False,
    ) -> Call:
        """A request whose body is one array: a ``.npy`` body with the parameters in the query
        string, or a JSON object with the array under ``field`` beside the parameters.

        Parameters that are None are left out, so the service's defaults apply; ``query`` stays
        in the query string in both forms.
        """
        given = {k: v for k, v in (params or {}).items() if v is not None}
        if self.config.binary if binary is None else binary:
            return Call(
                method,
                path,
                params={**(query or {}), **{k: _query_value(v) for k, v in given.items()}},
                content=npy_bytes(array),
                headers={"Content-Type": NPY, **(headers or {})},
                replay_safe=replay_safe,
                version_pinned=version_pinned,
            )
        body = {field: array.tolist(), **{k: _json_value(v) for k, v in given.items()}}
        return Call(
            method,
            path,
            params=query or None,
            json=body,
            headers=headers,
            replay_safe=replay_safe,
            version_pinned=version_pinned,
        )

    def _target_call(
        self,
        name: str,
        mu: ArrayLike | None,
        sigma: ArrayLike | None,
        features: ArrayLike | None,
        headers: Mapping[str, str],
        accept_unknown: bool,
    ) -> Call:
        path = _reference_path(name) + "/target"
        query = {"accept_unknown_feature_space": "true"} if accept_unknown else None
        if features is not None:
            if mu is not None or sigma is not None:
                raise ValueError("pass either mu and sigma, or features, not both")
            array = self._features(features, 2, "features")
            return self._array_call(
                "PUT", path, array, field="features", query=query, headers=headers
            )
        if mu is None or sigma is None:
            raise ValueError("pass mu and sigma together, or features")
        # Statistics travel in float64 whatever the wire dtype: sigma's small eigenvalues are
        # exactly what the Fréchet distance is sensitive to.
        mu64 = wire_array(as_numpy(mu, ndim=1, name="mu"), "float64", name="mu")
        sigma64 = wire_array(as_numpy(sigma, ndim=2, name="sigma"), "float64", name="sigma")
        if self.config.binary:
            content = stats_npz(mu64, sigma64)
            return Call(
                "PUT",
                path,
                params=query,
                content=content,
                headers={"Content-Type": NPZ, **headers},
            )
        body = {"mu": mu64.tolist(), "sigma": sigma64.tolist()}
        return Call("PUT", path, params=query, json=body, headers=headers)

    def _keyed_call(
        self,
        path: str,
        array: npt.NDArray[Any],
        field: str,
        key: str | None,
        space: Mapping[str, str],
        params: Mapping[str, Any] | None = None,
        version_pinned: bool = False,
        binary: bool | None = None,
    ) -> Call:
        """A POST of ``array`` in the feature space whose header is ``space``, that may carry an
        idempotency key: in the ``Idempotency-Key`` header, whatever the body's format (the
        service's commit route reads it only there)."""
        if key is not None and not 1 <= len(key) <= 128:
            raise ValueError("idempotency_key must have 1 to 128 characters")
        headers = dict(space) if key is None else {**space, "Idempotency-Key": key}
        return self._array_call(
            "POST",
            path,
            array,
            field=field,
            params=params,
            headers=headers,
            binary=binary,
            version_pinned=version_pinned,
        )

    def _commit_call(
        self, name: str, features: ArrayLike, key: str, space: Mapping[str, str]
    ) -> Call:
        array = self._features(features, 2, "features")
        return self._keyed_call(_reference_path(name) + "/commit", array, "features", key, space)

    def _watch_freshness(self, name: str, freshness: PoolFreshness) -> None:
        """Warn once per reference when reward answers keep saying that the pool takes more
        than ``config.turnover_steps`` steps to renew at the recent commit volume: a pool that
        lags the policy turns the reward into a fixed per-sample score, and training hacks it.
        Judged on the turnover, which a young run knows from its first calls."""
        if freshness.rows_per_call is None:  # no volume known yet
            return
        ranks = self.config.sharing_ranks
        turnover = freshness.turnover_calls
        steps = math.inf if turnover is None else turnover / ranks
        with self._stall_lock:
            if steps <= self.config.turnover_steps:
                self._stalled[name] = 0
                return
            calls = self._stalled[name] = self._stalled.get(name, 0) + 1
            if calls < self.config.stalled_calls or name in self._stall_reported:
                return
            self._stall_reported.add(name)
        logger.warning(
            "reference %s: at the recent commit volume (%.1f rows per reward call, %d rank(s)) "
            "the pool renews in %s; per-sample credits lose most of their gain beyond "
            "about %.0f. A pool that lags the policy turns distribution-wise rewards into a "
            "fixed per-sample score that training hacks (FID rises, modes collapse): commit "
            "more of what you reward (commit_fraction on credits, or RewardClient.commit), or "
            "use a smaller pool (about rows committed per step x 30).",
            name,
            freshness.rows_per_call,
            ranks,
            "no number of steps (nothing committed)" if turnover is None else f"{steps:.0f} steps",
            self.config.turnover_steps,
        )

    # -- operations -------------------------------------------------------------------------

    def _json(self, op: Op[httpx.Response]) -> Op[Mapping[str, Any]]:
        response = yield from op
        try:
            body = response.json()
        except ValueError as exc:
            raise ProtocolError(f"{response.request.url.path}: answer is not JSON") from exc
        if not isinstance(body, dict):
            raise ProtocolError(f"{response.request.url.path}: answer is not a JSON object")
        return body

    def _op_info(self, name: str) -> Op[ReferenceInfo]:
        """A reference's d, pool size n, pool version and base FD."""
        body = yield from self._json(self._exchange(Call("GET", _reference_path(name))))
        return decode.reference_info(body)

    def _op_list_references(self) -> Op[list[ReferenceInfo]]:
        """Every reference the service holds."""
        body = yield from self._json(self._exchange(Call("GET", "/v1/references")))
        return decode.reference_list(body)

    def _op_delete(self, name: str) -> Op[None]:
        """Delete a reference. Admin. (A delete retried after its answer was lost raises
        `NotFound`: the first attempt did the work.)"""
        yield from self._exchange(Call("DELETE", _reference_path(name)))

    def _op_put_target(
        self,
        name: str,
        mu: ArrayLike | None = None,
        sigma: ArrayLike | None = None,
        features: ArrayLike | None = None,
        *,
        stats: str | os.PathLike[str] | None = None,
        feature_space: FeatureSpaceLike | None = None,
        accept_unknown_feature_space: bool = False,
    ) -> Op[ReferenceInfo]:
        """Set the target: statistics ``mu`` (d,) and ``sigma`` (d, d) (sent in float64), a
        statistics file ``stats`` (any ``.npz`` with ``mu`` and ``sigma``: this project's,
        pytorch-fid's, an ADM / EDM reference batch; only those two are read and sent), or raw
        ``features`` (n, d) for the service to fit. Creates the reference. Admin.

        The reference records the feature space of its statistics: the file's
        ``feature_space`` member, else ``feature_space`` (or ``config.feature_space``); a file
        and a declared space that differ raise ValueError. Statistics that name none are
        refused (`UnprocessableEntity`) unless ``accept_unknown_feature_space``: the reference
        then records ``"unknown"`` and accepts requests that name no space. Replacing a target
        keeps the reference's space (another one: `Conflict`; delete first).
        """
        headers = self._space_header(feature_space)
        if stats is not None:
            if mu is not None or sigma is not None or features is not None:
                raise ValueError("pass stats alone, not with mu, sigma or features")
            mu, sigma, recorded = read_stats(stats)
            declared = headers.get(FEATURE_SPACE)
            if recorded is not None and declared is not None and recorded != declared:
                raise ValueError(
                    f"{stats} records feature space {recorded!r}, but this call declares "
                    f"{declared!r}"
                )
            if recorded is not None:
                headers = {FEATURE_SPACE: recorded}
        call = self._target_call(name, mu, sigma, features, headers, accept_unknown_feature_space)
        body = yield from self._json(self._exchange(call))
        return decode.reference_info(body)

    def _op_put_pool(
        self,
        name: str,
        features: ArrayLike,
        chunk_rows: int | None = None,
        *,
        feature_space: FeatureSpaceLike | None = None,
    ) -> Op[ReferenceInfo]:
        """Replace the pool with ``features`` (N, d) and publish it (a new version). Uploaded
        in chunks of ``chunk_rows`` rows (by default about ``config.chunk_bytes`` each);
        an interrupted upload starts over rather than risk staging a chunk twice. Admin.
        ``feature_space`` (default ``config.feature_space``) must be the reference's."""
        space = self._space_header(feature_space)
        array = self._features(features, 2, "features")
        if chunk_rows is None:
            chunk_rows = max(1, self.config.chunk_bytes // max(1, array.shape[1] * array.itemsize))
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        chunks = [array[i : i + chunk_rows] for i in range(0, len(array), chunk_rows)] or [array]
        restarts = 0
        while True:
            try:
                return (yield from self._upload_pool(name, chunks, space))
            except _MaybeApplied as exc:  # a continuation chunk may have been staged twice
                restarts += 1
                if restarts > self.config.retries:
                    raise
                delay = self._delay(restarts, exc)
                logger.warning(
                    "pool upload of %s interrupted (%s); restarting in %.2f s", name, exc, delay
                )
                yield Sleep(delay)

    def _upload_pool(
        self, name: str, chunks: Sequence[npt.NDArray[Any]], space: Mapping[str, str]
    ) -> Op[ReferenceInfo]:
        """PUT the first chunk (which starts a fresh staged upload), POST the rest, the last
        with ``final=true``; check the service's staged row count after every chunk.

        Only the PUT is replay-safe: a resent POST could stage its rows twice, so a POST that
        may have been applied restarts the whole upload from the PUT instead.
        """
        path = _reference_path(name) + "/pool"
        staged = 0
        body: Mapping[str, Any] = {}
        for i, chunk in enumerate(chunks):
            final = i == len(chunks) - 1
            call = self._array_call(
                "PUT" if i == 0 else "POST",
                path,
                chunk,
                field="features",
                params={"final": final},
                headers=space,
                replay_safe=i == 0,
            )
            body = yield from self._json(self._exchange(call))
            staged += len(chunk)
            if not final and body.get("staged_rows") != staged:
                raise ProtocolError(
                    f"pool upload of {name}: service staged {body.get('staged_rows')} rows, "
                    f"client sent {staged}"
                )
        return decode.reference_info(body)

    def _op_rewards(
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
    ) -> Op[RewardBatch]:
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
            commit_fraction: Commit this share of the groups' rows in the same request, as
                `credits` does (``idempotency_key``, or a uuid4 reused on every retry).
            feature_space: The features' space (overrides ``config.feature_space``); another
                than the reference's raises `Conflict` (409).
        """
        array = self._features(groups, 3, "groups")
        key = idempotency_key
        if commit_fraction is not None and key is None:
            key = uuid.uuid4().hex
        version = self.config.version if version is None else version
        rows: npt.NDArray[np.int64] | None = None
        binary = self.config.binary
        if indices is not None:
            rows = as_numpy(indices, ndim=(1, 2), name="indices").astype(np.int64)
            mode = "indices" if mode is None else mode
            # The query string carries one row set shared by all groups: collapse identical
            # rows to it, and send truly per-group rows as JSON.
            if rows.ndim == 2 and (rows == rows[:1]).all():
                rows = rows[0]
            binary = binary and rows.ndim == 1
        params = {
            "mode": mode,
            "seed": seed,
            "method": method,
            "version": version,
            "after": None if version is not None else self._after(name),
            "indices": rows,
            "commit_fraction": commit_fraction,
        }
        path = _reference_path(name) + "/rewards"
        space = self._space_header(feature_space)
        call = self._keyed_call(
            path, array, "groups", key, space, params, version is not None, binary
        )
        body = yield from self._json(self._exchange(call))
        batch = decode.reward_batch(body, key)
        if batch.committed is not None:
            self._wrote(name, batch.committed.version)
        if batch.freshness is not None:
            self._watch_freshness(name, batch.freshness)
        return batch

    def _op_credits(
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
    ) -> Op[CreditBatch]:
        """Per-sample distribution-wise credits of ``samples`` (B, d): ``base_fd - FD`` after
        each sample is added to the pool (``form`` ``add``, the service default), or replaces
        one pool row shared by the request (``replace``); B samples cost one batched
        computation.

        Args:
            form: ``add`` (no pool row: a sample has one credit at a pool version, on every
                rank and call) or ``replace``.
            seed: ``replace``: draws the replaced row (the service draws and echoes one if
                None). Either form: seeds the draw of the committed share.
            row: ``replace``: the pool row every sample replaces (instead of ``seed``).
            round: ``add``: names a round of requests (the ranks of one training step: a run
                id every rank shares and the step), all answered at the version its first
                request found, so that every rank scores against the same pool.
            method: ``lowrank`` (service default) or ``exact``.
            version: Pool version to pin (overrides ``config.version``).
            commit_fraction: Commit this share of the samples in the same request (an
                unbiased draw), keeping the pool the policy's own. Needs an idempotency key:
                ``idempotency_key``, or a fresh uuid4 reused on every retry, so the commit
                applies once.
            feature_space: The samples' space (overrides ``config.feature_space``).

        Logs one warning per reference when the pool has not moved for
        ``config.stalled_calls`` calls in a row.
        """
        array = self._features(samples, 2, "samples")
        version = self.config.version if version is None else version
        key = idempotency_key
        if commit_fraction is not None and key is None:
            key = uuid.uuid4().hex
        params = {
            "form": form,
            "seed": seed,
            "row": row,
            "round": round,
            "after": None if version is not None else self._after(name),
            "method": method,
            "version": version,
            "commit_fraction": commit_fraction,
        }
        path = _reference_path(name) + "/credits"
        space = self._space_header(feature_space)
        call = self._keyed_call(path, array, "samples", key, space, params, version is not None)
        body = yield from self._json(self._exchange(call))
        batch = decode.credit_batch(body, key)
        if batch.committed is not None:
            self._wrote(name, batch.committed.version)
        self._watch_freshness(name, batch.freshness)
        return batch

    def _op_commit(
        self,
        name: str,
        features: ArrayLike,
        idempotency_key: str | None = None,
        *,
        feature_space: FeatureSpaceLike | None = None,
    ) -> Op[CommitResult]:
        """Roll the pool: ``features`` (K, d) replace its oldest rows. The idempotency key (a
        fresh uuid4 when None) is reused on every retry, so the commit applies once.
        ``feature_space`` overrides ``config.feature_space``."""
        # One key for every retry of this commit: the service applies a key once.
        key = uuid.uuid4().hex if idempotency_key is None else idempotency_key
        call = self._commit_call(name, features, key, self._space_header(feature_space))
        body = yield from self._json(self._exchange(call))
        result = decode.commit_result(body, key)
        self._wrote(name, result.version)
        return result

    def _op_fd(
        self, name: str, features: ArrayLike, *, feature_space: FeatureSpaceLike | None = None
    ) -> Op[FDResult]:
        """Fréchet distance of ``features`` (n >= 2, d) to the reference's target;
        ``feature_space`` overrides ``config.feature_space``."""
        call = self._array_call(
            "POST",
            _reference_path(name) + "/fd",
            self._features(features, 2, "features"),
            field="features",
            headers=self._space_header(feature_space),
        )
        body = yield from self._json(self._exchange(call))
        return decode.fd_result(body)

    # -- probes: one attempt, never raise for an unreachable service, for polling loops ----

    def _op_health(self) -> Op[bool]:
        """Whether the service process answers (``/healthz``). One try; never raises."""
        reply = yield Call("GET", "/healthz")
        return isinstance(reply, httpx.Response) and reply.status_code == 200

    def _op_ready(self) -> Op[Readiness]:
        """Whether the service can serve (``/readyz``: store reachable). One try; never raises
        for an unreachable service (``ready`` is then false)."""
        reply = yield Call("GET", "/readyz")
        if not isinstance(reply, httpx.Response):
            return Readiness(ready=False, store=None, references=None)
        try:
            body = reply.json()
        except ValueError:
            body = {}
        return decode.readiness(reply.status_code == 200, body if isinstance(body, dict) else {})

    def _op_wait_ready(self, timeout: float = 30.0, interval: float = 0.1) -> Op[Readiness]:
        """Poll ``/readyz`` until ready; `RequestTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            state = yield from self._op_ready()
            if state.ready:
                return state
            if time.monotonic() >= deadline:
                raise RequestTimeout(f"{self.config.base_url} not ready after {timeout} s")
            yield Sleep(interval)


def _reference_path(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"reference name {name!r} must match {_NAME.pattern} (letters, digits, . _ -)"
        )
    return "/v1/references/" + quote(name, safe="")


def _query_value(value: Any) -> str:
    """Query-string form: booleans as true/false, row sets as comma-separated ints."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, np.ndarray):
        return ",".join(str(int(v)) for v in value)
    return str(value)


def _json_value(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value
