"""`RewardClient`: the blocking client.

Each public method drives its operation of `BaseRewardClient` (``_op_<name>``: the request
built, retried and decoded there) with blocking I/O: `_run` sends the `Call`s it yields with
an ``httpx.Client`` and sleeps its `Sleep`s with ``time.sleep``. `AsyncRewardClient`
(`_async_client`) has the same methods and signatures, awaited; the docstrings here document
both (that class takes them by name).
"""

from __future__ import annotations

import os
import time
from contextlib import closing
from types import TracebackType
from typing import TypeVar

import httpx

from ._base import BaseRewardClient
from ._config import FeatureSpaceLike
from ._encoding import ArrayLike
from ._protocol import Call, Done, Op, advance
from ._requests import ScoreOptions
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

__all__ = ["RewardClient"]

T = TypeVar("T")


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
                if isinstance(step, Call):
                    step = advance(op, self._send(step))
                else:
                    time.sleep(step.seconds)
                    step = advance(op, None)
            return step.value

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
        return self._run(self._op_list_references())

    def put_target(
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
        return self._run(
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

    def put_pool(
        self,
        name: str,
        features: ArrayLike,
        chunk_rows: int | None = None,
        *,
        feature_space: FeatureSpaceLike | None = None,
    ) -> ReferenceInfo:
        """Replace the pool with ``features`` (N, d) and publish it (a new version). Uploaded
        in chunks of ``chunk_rows`` rows (by default about ``config.chunk_bytes`` each);
        an interrupted upload starts over rather than risk staging a chunk twice. Admin.
        ``feature_space`` (default ``config.feature_space``) must be the reference's."""
        return self._run(self._op_put_pool(name, features, chunk_rows, feature_space=feature_space))

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
        commit_fraction: float | None = None,
        idempotency_key: str | None = None,
        feature_space: FeatureSpaceLike | None = None,
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
            commit_fraction: Commit this share of the groups' rows in the same request, as
                `credits` does (``idempotency_key``, or a uuid4 reused on every retry).
            feature_space: The features' space (overrides ``config.feature_space``); another
                than the reference's raises `Conflict` (409).
        """
        options = ScoreOptions(
            method=method,
            version=version,
            commit_fraction=commit_fraction,
            idempotency_key=idempotency_key,
            feature_space=feature_space,
        )
        return self._run(
            self._op_rewards(name, groups, mode=mode, seed=seed, indices=indices, options=options)
        )

    def credits(
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

        Logs one warning per reference when ``config.stalled_calls`` answers in a row say
        that the pool takes more than ``config.turnover_steps`` steps to renew.
        """
        options = ScoreOptions(
            method=method,
            version=version,
            commit_fraction=commit_fraction,
            idempotency_key=idempotency_key,
            feature_space=feature_space,
        )
        return self._run(
            self._op_credits(
                name, samples, form=form, seed=seed, row=row, round=round, options=options
            )
        )

    def commit(
        self,
        name: str,
        features: ArrayLike,
        idempotency_key: str | None = None,
        *,
        feature_space: FeatureSpaceLike | None = None,
    ) -> CommitResult:
        """Roll the pool: ``features`` (K, d) replace its oldest rows. The idempotency key (a
        fresh uuid4 when None) is reused on every retry, so the commit applies once.
        ``feature_space`` overrides ``config.feature_space``."""
        return self._run(
            self._op_commit(name, features, idempotency_key, feature_space=feature_space)
        )

    def fd(
        self, name: str, features: ArrayLike, *, feature_space: FeatureSpaceLike | None = None
    ) -> FDResult:
        """Fréchet distance of ``features`` (n >= 2, d) to the reference's target;
        ``feature_space`` overrides ``config.feature_space``."""
        return self._run(self._op_fd(name, features, feature_space=feature_space))
