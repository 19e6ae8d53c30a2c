"""The use cases behind the routes: check requests against the reference they are served by,
write through the store, run the engine in worker threads. Knows no HTTP; raises
:mod:`reward_service.errors`. What this process holds of each reference, and its standing with
the store, is :class:`~reward_service.replication.replica_set.ReplicaSet`'s.

The API has checked what it can before a request gets here (:mod:`reward_service.limits` says
which rule runs where): parameters, the shape of every array, and the feature space and d
against the record this process held when the body arrived (:class:`PostedFeatures`). The
service checks what needs the version it serves or the decoded values: the feature space and d
where the API could not check them against this reference, the values, the rows a commit adds
against the pool's N, a pinned version, and the cost bound with the path the pool takes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from .admission import Admission
from .cost import check_cost, turns_taken
from .engine import (
    Committed,
    CreditForm,
    CreditResult,
    DegeneratePool,
    Method,
    Mode,
    RewardEngine,
    RewardResult,
    VersionNotHeld,
    frechet_distance,
    gaussian_of,
    sample_credits,
)
from .errors import BadInput, Conflict, NotFound, Unavailable, Unprocessable
from .feature_spaces import check_feature_space
from .limits import ArraySpec, Limits
from .metrics import ServiceMetrics
from .replication.freshness import Freshness
from .replication.replica import HeldState, Replica
from .replication.replica_set import ReplicaSet, View
from .replication.workers import WorkerThreads
from .settings import Settings
from .store.base import CommitRecord, ReferenceMeta, Store, StoreKind, Target, rows_digest

__all__ = [
    "CommitOutcome",
    "CommitShare",
    "CreditParams",
    "Lag",
    "Outcome",
    "PostedFeatures",
    "ReferenceService",
    "RewardParams",
    "View",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_BACKGROUND_THREADS = 2  # rebuilds, loads and snapshots of different references at once


@dataclass(frozen=True)
class PostedFeatures:
    """The feature space a request's features declare (``space``; None: no ``Feature-Space``
    header), and the record of the reference the API checked them against before their body
    was read (``checked``; None: this process held none): their space when the request arrived,
    their d by the body's header or JSON text. A reference keeps its d and its space for its
    life (its incarnation), so the service checks them only against another life than that."""

    space: str | None
    checked: ReferenceMeta | None = None

    def checked_for(self, meta: ReferenceMeta) -> bool:
        """Whether space and d were checked against the life of the reference ``meta`` is of."""
        return self.checked is not None and self.checked.incarnation == meta.incarnation


@dataclass(frozen=True)
class CommitShare:
    """Commit ``fraction`` of what a request rewards, under ``key`` (a retry applies it once),
    a key of ``caller``'s own (a digest of its token; keys are scoped per caller)."""

    fraction: float
    key: str | None
    caller: str


@dataclass(frozen=True)
class RewardParams:
    mode: Mode = "shared"
    seed: int | None = None
    indices: np.ndarray | None = None
    method: Method = "lowrank"
    version: int | None = None
    commit: CommitShare | None = None
    after: int | None = None


@dataclass(frozen=True)
class CreditParams:
    """``after``: the caller's last commit, which the answer's version must hold (read your
    writes); ``round``: requests of one round (the ranks of a training step) are answered at
    one version, the one its first request found."""

    form: CreditForm = "add"
    seed: int | None = None
    row: int | None = None
    method: Method = "lowrank"
    version: int | None = None
    commit: CommitShare | None = None
    after: int | None = None
    round: str | None = None


@dataclass(frozen=True)
class CommitOutcome:
    version: int
    base_fd: float
    n: int
    replayed: bool
    rows: int


@dataclass(frozen=True)
class Lag:
    """How far the version an answer used was behind the newest the store held when the
    request was served: in versions and in committed rows."""

    versions: int
    rows: int


@dataclass(frozen=True)
class Outcome:
    """A rewards or credits answer: the engine's ``result``, whether the version held was
    stale, the pool's freshness when it was computed, and the commit it made (None: none
    asked, or the draw took no row)."""

    result: RewardResult | CreditResult
    stale: bool
    freshness: Freshness
    committed: CommitOutcome | None
    lag: Lag


def _key_seed(key: str) -> int:
    """A seed from an idempotency key: a retry without a seed draws the same rows again."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def _drawn(rows: np.ndarray, fraction: float, seed: int, key: str) -> np.ndarray:
    """An unbiased share of ``rows``: ``floor(f B)`` rows plus one more with probability
    ``frac(f B)``, so each row is committed with probability ``f``; uniformly without
    replacement. Seeded by the request's seed and its key: a retry draws the same rows, and a
    trainer that keeps one seed (one replaced row) across calls still commits other samples
    each call."""
    rng = np.random.default_rng([seed, _key_seed(key)])
    expected = fraction * len(rows)
    count = int(expected) + int(rng.random() < expected - int(expected))
    return rows[np.sort(rng.choice(len(rows), size=count, replace=False))]


def _fit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean and covariance (ddof 1) of feature rows."""
    mu, sigma = gaussian_of(torch.from_numpy(np.array(features, dtype=np.float64)))
    return mu.numpy(), sigma.numpy()


class ReferenceService:
    """The use cases of the API, one method per operation."""

    def __init__(self, store: Store, settings: Settings, metrics: ServiceMetrics) -> None:
        self.limits = Limits(settings)
        self.workers = WorkerThreads(
            settings.max_concurrent_compute, _BACKGROUND_THREADS, settings.compute_niceness
        )
        self.references = ReplicaSet(store, settings, metrics, self.workers)
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self.admission = Admission(settings)
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def store_kind(self) -> StoreKind:
        return self._store.kind

    async def start(self) -> None:
        await self.references.start()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.references.close()
        await self._store.close()
        self.workers.shutdown()

    async def ready(self) -> int:
        """Number of stored references; raises ``Unavailable`` when the store is down."""
        return await self.references.ready()

    # -- reads -------------------------------------------------------------------------------

    async def view(self, name: str) -> View:
        return await self.references.view(name)

    def held_meta(self, name: str) -> ReferenceMeta | None:
        return self.references.held_meta(name)

    def held_lowrank_ready(self, name: str) -> bool:
        return self.references.held_lowrank_ready(name)

    async def list_views(self) -> list[View]:
        return await self.references.list_views()

    async def rewards(
        self, name: str, groups: np.ndarray, params: RewardParams, posted: PostedFeatures
    ) -> Outcome:
        """Engine rewards for (G, K, d) ``groups`` ``posted`` in a feature space, then the commit
        of a share of their rows when asked."""
        view = await self._served_view(name, params.version, params.after)
        self._check_space(name, view.state.meta, posted)
        engine = self._engine_of(view.state)
        self._check_features(self.limits.groups, groups, view.state.meta, posted)
        self._check_pin(params.version, engine.version)
        rows = groups.reshape(-1, groups.shape[-1])
        seed = self._commit_seed(params.commit, params.seed, len(rows), engine.n)
        turns = self._priced(self.limits.groups.what, groups.shape, params.method, engine)
        result = await self._run(
            engine.rewards,
            groups,
            mode=params.mode,
            seed=seed,
            indices=params.indices,
            method=params.method,
            turns=turns,
        )
        self._check_pin(params.version, result.version)
        g, _, _ = groups.shape
        self._metrics.groups_rewarded.labels(name).inc(g)
        return await self._rewarded(name, view, result, rows, params.commit, seed)

    async def credits(
        self, name: str, samples: np.ndarray, params: CreditParams, posted: PostedFeatures
    ) -> Outcome:
        """Per-sample credits of (B, d) ``samples`` ``posted`` in a feature space (the pool with
        each sample added, or one shared pool row replaced by it), then the commit of a share of
        them when asked (drawn with the request's seed).

        ``add`` credits are answered at a version that holds the caller's ``after``, lags the
        store by at most ``max_lag_share`` of the pool, and for a ``round`` is the round's (the
        version its first request found: every rank of a step scores against one pool while
        their commits move the head); a pin names the version itself."""
        if params.row is not None and params.seed is not None:
            raise BadInput("send either row or seed: a seed only draws the replaced row")
        replaced = params.form == "replace"
        if not replaced and params.row is not None:
            raise BadInput("row names the replaced row: only with form=replace")
        if replaced and params.round is not None:
            raise BadInput("round: only with form=add (replace-form credits use the head)")
        view = await self._served_view(name, params.version, params.after)
        self._check_space(name, view.state.meta, posted)
        engine = self._engine_of(view.state)
        self._check_features(self.limits.samples, samples, view.state.meta, posted)
        at = params.version
        if params.round is not None and at is None:
            at = await self._round_version(name, view, params.round)
            if at > engine.version:  # another process found it: catch up to it
                view = await self.references.view(name, wait=True)
                engine = self._engine_of(view.state)
        if replaced:
            self._check_pin(at, engine.version)
        seed = self._commit_seed(params.commit, params.seed, len(samples), engine.n)
        turns = self._priced(self.limits.samples.what, samples.shape, params.method, engine)
        try:
            result = await self._run(
                sample_credits,
                engine,
                samples,
                seed=seed if replaced and params.row is None else None,
                row=params.row,
                method=params.method,
                form=params.form,
                version=None if replaced else at,
                turns=turns,
            )
        except VersionNotHeld as exc:
            raise Conflict(f"{exc}; ask again without pinning the version") from exc
        if not replaced:  # the seed drew no row: echo the one the commit's draw used
            result = dataclasses.replace(result, seed=seed)
        self._metrics.groups_rewarded.labels(name).inc(len(samples))
        return await self._rewarded(name, view, result, samples, params.commit, seed)

    async def _served_view(self, name: str, pinned: int | None, after: int | None) -> View:
        """The reference for a rewards or credits request: as held while a catch-up runs, if
        that holds the caller's ``after`` and lags the store by at most ``max_lag_share`` of
        the pool's rows; caught up otherwise (and always for a pin)."""
        view = await self.references.view(name, wait=pinned is not None)
        if pinned is None and not view.stale and self._lags(view, after):
            view = await self.references.view(name, wait=True)
        engine = view.state.engine
        if after is not None and engine is not None and engine.version < after:
            held = f"after={after}: this process holds version {engine.version}"
            if view.stale:
                raise Unavailable("read", f"{held} and the store is unreachable; retry")
            raise Conflict(f"{held}, the newest stored: send the version of your own commit")
        return view

    def _lags(self, view: View, after: int | None) -> bool:
        engine = view.state.engine
        if engine is None:
            return False
        if after is not None and engine.version < after:
            return True
        behind = self.lag_of(view, engine.version).rows
        return behind > self._settings.max_lag_share * engine.n

    @staticmethod
    def lag_of(view: View, version: int) -> Lag:
        """How far ``version`` (held) is behind the newest version the store had when
        ``view`` was taken."""
        meta = view.state.meta
        try:
            rows = max(0, meta.rows - view.replica.rows_at(version))
        except VersionNotHeld:  # dropped from the history meanwhile: count versions only
            rows = 0
        return Lag(versions=max(0, meta.version - version), rows=rows)

    async def _round_version(self, name: str, view: View, round_id: str) -> int:
        """The version of ``round_id``'s answers: the first proposal of any process, each
        proposing the head it holds (caught up as any request is)."""
        state = view.state
        return await self.references.call(
            self._store.round_version(
                name,
                state.meta.incarnation,
                round_id,
                self._engine_of(state).version,
                self._settings.round_ttl_seconds,
            )
        )

    def _priced(
        self, what: str, shape: tuple[int, ...], method: Method, engine: RewardEngine
    ) -> Callable[[RewardResult | CreditResult], float]:
        """The cost bound (413) with the path the pool served takes: where its spectrum is
        numerically singular every group runs exact, and is priced so. Returns the turns of
        the caller's compute share a result took (its exact fallbacks beyond the price)."""
        ready = engine.lowrank_ready
        check_cost(what, shape, method, self._settings.max_request_gflop, ready)
        return lambda result: turns_taken(shape, method, result.methods_used, ready)

    def _commit_seed(
        self, commit: CommitShare | None, seed: int | None, rows: int, n: int
    ) -> int | None:
        """Check a requested commit before any work (a key, a share that fits the pool: the
        share itself lies in (0, 1], as the API validated it), and the seed of the request: its
        own, else one from the key so that a retry draws the same rows and replays the same
        commit."""
        if commit is None:
            return seed
        if not commit.key:
            raise Unprocessable(
                "commit_fraction needs an idempotency key (the Idempotency-Key header or, in "
                'JSON, "idempotency_key"); reuse it when retrying the same request'
            )
        self.limits.check_fits_pool(int(np.ceil(commit.fraction * rows)), n, "commit rows")
        return _key_seed(commit.key) if seed is None else seed

    async def _rewarded(
        self,
        name: str,
        view: View,
        result: RewardResult | CreditResult,
        rows: np.ndarray,
        commit: CommitShare | None,
        seed: int | None,
    ) -> Outcome:
        """Count the request, commit its share, and say how fresh the pool was."""
        self._metrics.samples_rewarded.labels(name).inc(len(rows))
        self._metrics.reward_compute.labels(name, result.method).observe(result.compute_seconds)
        freshness = view.replica.freshness()
        view.replica.record_call()
        lag = self.lag_of(view, result.version)
        self._metrics.lag_rows.labels(name).set(lag.rows)
        committed = None
        if commit is not None and commit.key:
            drawn_with = 0 if seed is None else seed
            chosen = _drawn(rows, commit.fraction, drawn_with, commit.key)
            # The key is remembered with a digest of what decides the draw (every row of the
            # request, the fraction, the seed), whatever it drew: the same request is a retry,
            # another one a 409, even where either draws no row.
            request = repr((commit.fraction, drawn_with))
            digest = await asyncio.to_thread(rows_digest, rows, request)
            if len(chosen):
                # Through the view this request holds: its rows were checked as the samples,
                # and their count against the pool with the share.
                committed = await self._append(
                    name, view, chosen, commit.key, commit.caller, digest
                )
            else:
                await self._remember_key(name, commit.key, commit.caller, digest)
        return Outcome(result, view.stale, freshness, committed, lag)

    def freshness(self, name: str) -> Freshness:
        """How fresh the held pool of ``name`` is."""
        return self.references.replica(name).freshness()

    async def fd(
        self, name: str, features: np.ndarray, posted: PostedFeatures
    ) -> tuple[float, View]:
        view = await self.references.view(name, wait=False)
        state = view.state
        self._check_space(name, state.meta, posted)
        self._check_features(self.limits.fd_features, features, state.meta, posted)
        if state.engine is not None:
            value = await self._run(state.engine.fd, features)
        else:
            mu, sigma = np.array(state.target.mu), np.array(state.target.sigma)  # writable
            value = await self._run(lambda x: frechet_distance(*_fit(x), mu, sigma), features)
        return float(value), view

    # -- writes: every check runs before anything is stored ----------------------------------

    async def put_target(
        self, name: str, mu: np.ndarray, sigma: np.ndarray, *, feature_space: str
    ) -> View:
        """Target statistics as sent: checked to be a Gaussian's (:meth:`Limits.check_target`).
        A new reference records ``feature_space``; an existing one must hold the same (409)."""
        await self._run(self.limits.check_target, mu, sigma)
        target = Target(mu.astype(np.float64), sigma.astype(np.float64))
        return await self._store_target(name, target, feature_space)

    async def fit_target(self, name: str, features: np.ndarray, *, feature_space: str) -> View:
        """A target fitted to ``features`` (their shape checked where they were read; a new
        reference takes their d)."""
        self.limits.check_values(self.limits.target_features.what, features)
        mu, sigma = await self._run(_fit, features)
        return await self._store_target(name, Target(mu, sigma), feature_space)

    async def _store_target(self, name: str, target: Target, feature_space: str) -> View:
        await self.references.call(
            self._store.put_target(name, target, time.time(), feature_space=feature_space)
        )
        return await self.references.view(name, allow_stale=False)

    async def upload_pool(
        self,
        name: str,
        chunk: np.ndarray,
        *,
        first: bool,
        final: bool,
        posted: PostedFeatures,
    ) -> View | int:
        """Stage a chunk ``posted`` in a feature space (``first`` starts a new upload); on
        ``final`` publish the staged rows. Returns the published view, or the rows staged so
        far. Needs the stored record only, so a reference whose pool cannot be loaded can still
        be given a new one."""
        meta = await self.references.meta(name)
        self._check_space(name, meta, posted)
        self._check_features(self.limits.pool_rows, chunk, meta, posted)
        staged_before = 0 if first else meta.staged_rows
        if not first and staged_before == 0:
            raise Conflict("no pool upload in progress: send the first chunk with PUT")
        if final and staged_before + len(chunk) < 2:
            raise BadInput("a pool needs at least 2 rows")
        store, incarnation = self._store, meta.incarnation
        staged = await self.references.call(store.stage_pool(name, incarnation, chunk, reset=first))
        if not final:
            return staged
        await self.references.call(store.publish_pool(name, incarnation, time.time()))
        return await self.references.view(name, allow_stale=False)

    async def commit(
        self,
        name: str,
        features: np.ndarray,
        key: str,
        posted: PostedFeatures,
        *,
        caller: str,
        digest: str | None = None,
    ) -> CommitOutcome:
        """Commit ``features`` under ``caller``'s ``key``, remembered with ``digest`` (that of
        the request whose share they are), else with the rows' own."""
        # The checks need the record, d and N, which no commit changes: the version held will
        # do, rather than queueing behind the catch-up in progress (the store refuses the
        # entry if the reference was replaced meanwhile).
        view = await self.references.view(name, allow_stale=False, wait=False)
        state = view.state
        self._check_space(name, state.meta, posted)
        engine = self._engine_of(state)
        self._check_features(self.limits.commit_rows, features, state.meta, posted)
        self.limits.check_fits_pool(len(features), engine.n, "commit rows")
        return await self._append(name, view, features, key, caller, digest)

    async def _append(
        self,
        name: str,
        view: View,
        features: np.ndarray,
        key: str,
        caller: str,
        digest: str | None,
    ) -> CommitOutcome:
        """The commit of checked ``features`` through ``view``: refused where it would make
        the pool singular, then stored, and answered once the store holds it. Its base FD is
        the one the check worked out when the store appended it right after the head checked
        (no other process's commit between them); only otherwise does the answer wait for this
        process to apply the log up to it."""
        state, replica = view.state, view.replica
        ttl, now = self._settings.idempotency_ttl_seconds, time.time()
        record = await asyncio.to_thread(  # the digest hashes megabytes
            CommitRecord.of, features, key, ttl, now, caller=caller, digest=digest
        )
        # Whether the rows leave the pool regular depends on the rows they land on: this
        # process's commits to the reference go one at a time, each checked against the head
        # caught up with the store and applied before the next is checked.
        async with replica.committing:
            try:
                prospect = await self._check_regular(name, features)
            except DegeneratePool as exc:
                # A retry of a commit the store holds was checked against the pool that
                # already holds its rows: it appends nothing and gets its stored answer. Asked
                # only on a refusal, so that a commit pays no extra store round trip.
                seen = await self.references.call(
                    self._store.seen_commit(name, state.meta.incarnation, caller, key, now)
                )
                if not seen:
                    raise Conflict(str(exc)) from exc
                prospect = None
            ack = await self.references.call(
                self._store.append_commit(name, state.meta.incarnation, record)
            )
            if prospect is not None and prospect.version == ack.version and not ack.replayed:
                base_fd = prospect.base_fd
                self._spawn(self._catch_up(name))  # applied before the next request needs it
            else:
                state = (await self.references.view(name, allow_stale=False)).state
                # None: older than the history this replica keeps
                remembered = replica.base_fd_at(ack.version)
                base_fd = self._engine_of(state).base_fd if remembered is None else remembered
        if not ack.replayed:
            replica.record_committed(len(features))
            self._metrics.commits.labels(name).inc()
            if ack.version % self._settings.snapshot_every == 0:
                self._spawn(self._snapshot(replica, state.meta.incarnation))
        return CommitOutcome(ack.version, float(base_fd), state.meta.n, ack.replayed, len(features))

    async def _check_regular(self, name: str, features: np.ndarray) -> Committed | None:
        """Raise :class:`DegeneratePool` where committing ``features`` would make the pool
        numerically singular for the low-rank path while it is not
        (:meth:`RewardEngine.check_commit`), before anything is stored: every replica applies
        what the log holds, so a refusal comes before it. Returns what appending them to the
        head caught up here makes (None: not worked out)."""
        engine = self._engine_of((await self.references.view(name, allow_stale=False)).state)
        return await self.workers.catch_up(engine.check_commit, features)

    async def _catch_up(self, name: str) -> None:
        """Apply the log to what this process holds of ``name`` (a background task after a
        commit was answered before it was applied)."""
        try:
            await self.references.view(name, allow_stale=False)
        except (Unavailable, Conflict, NotFound) as exc:
            log.info("catch-up of %s after a commit deferred: %s", name, exc)
        except Exception:  # a background task: log, never lose the error silently
            log.exception("catch-up of %s after a commit failed", name)

    async def _remember_key(self, name: str, key: str, caller: str, digest: str) -> None:
        """Remember ``caller``'s ``key`` for a share that drew no row, with the digest of its
        request: the same request again is a retry (that commits nothing again), the key with
        another request a 409, as after any commit."""
        meta = (await self.references.view(name, allow_stale=False, wait=False)).state.meta
        ttl = self._settings.idempotency_ttl_seconds
        nothing = np.empty((0, meta.d))
        record = CommitRecord.of(nothing, key, ttl, time.time(), caller=caller, digest=digest)
        await self.references.call(self._store.append_commit(name, meta.incarnation, record))

    async def delete(self, name: str) -> None:
        existed = await self.references.call(self._store.delete(name))
        await self.references.forget(name)
        if not existed:
            raise NotFound(f"unknown reference {name!r}")

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _check_space(name: str, meta: ReferenceMeta, posted: PostedFeatures) -> None:
        """The posted features' space against the reference's (409), unless the API checked it
        against this life of the reference."""
        if not posted.checked_for(meta):
            check_feature_space(name, meta.feature_space, posted.space)

    def _check_features(
        self, spec: ArraySpec, features: np.ndarray, meta: ReferenceMeta, posted: PostedFeatures
    ) -> None:
        """What only the decoded features and the reference served tell (400): their d against
        the reference's, unless the API checked it against this life of the reference, and
        their values. Their shape was checked where the body was read."""
        if not posted.checked_for(meta):
            self.limits.check_width(spec.what, features.shape, meta.d)
        self.limits.check_values(spec.what, features)

    async def _run(
        self,
        fn: Callable[..., T],
        *args: object,
        turns: Callable[[T], float] | None = None,
        **kwargs: object,
    ) -> T:
        """Engine work in a worker thread, in one of the compute slots the caller's token may
        hold (``reward_service.admission``), counted as ``turns(result)`` turns of its share
        (one without); the engine's ``ValueError`` is the caller's input problem."""
        async with self.admission.compute.slot():
            try:
                result = await self.workers.compute(fn, *args, **kwargs)
            except ValueError as exc:
                raise BadInput(str(exc)) from exc
            if turns is not None:
                self.admission.compute.charge(turns(result))
            return result

    async def _snapshot(self, replica: Replica, incarnation: str) -> None:
        """Store what ``replica`` holds as the base, once it has applied the commit that made
        the snapshot due (commits are answered before they are applied)."""
        try:
            await self.references.view(replica.name, allow_stale=False)
            base = await replica.snapshot()
            if base is not None:
                await self.references.call(
                    self._store.write_snapshot(replica.name, incarnation, base)
                )
        except (Unavailable, Conflict) as exc:
            log.warning("snapshot of %s skipped: %s", replica.name, exc)
        except Exception:  # a background task: log, never lose the error silently
            log.exception("snapshot of %s failed", replica.name)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _engine_of(state: HeldState) -> RewardEngine:
        if state.engine is None:
            raise Conflict(f"reference {state.meta.name!r} has no pool yet: upload one first")
        return state.engine

    @staticmethod
    def _check_pin(pinned: int | None, version: int) -> None:
        if pinned is not None and pinned != version:
            raise Conflict(f"pinned version {pinned} but the reference is at version {version}")
