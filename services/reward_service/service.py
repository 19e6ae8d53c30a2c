"""The use cases behind the routes: validate against the reference, talk to the store, run the
engine in worker threads. Knows no HTTP; raises :mod:`reward_service.errors` and lets
``StoreUnavailable`` through for writes (the API answers 503 + Retry-After)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from .engine import RewardEngine, RewardResult, frechet_distance, gaussian_of
from .errors import BadInput, Conflict, NotFound, PayloadTooLarge
from .metrics import ServiceMetrics
from .replica import HeldState, Replica
from .settings import Settings
from .store.base import Store, StoreConflict, StoreUnavailable, Target

__all__ = ["CommitOutcome", "ReferenceService", "RewardParams", "View"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class View:
    """A reference as served: the held state, and whether the store could confirm it."""

    state: HeldState
    stale: bool


@dataclass(frozen=True)
class RewardParams:
    mode: Literal["shared", "independent", "indices"] = "shared"
    seed: int | None = None
    indices: np.ndarray | None = None
    method: Literal["lowrank", "exact"] = "lowrank"
    version: int | None = None


@dataclass(frozen=True)
class CommitOutcome:
    version: int
    base_fd: float
    n: int
    replayed: bool


def _fit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean and covariance (ddof 1) of feature rows."""
    mu, sigma = gaussian_of(torch.from_numpy(np.array(features, dtype=np.float64)))
    return mu.numpy(), sigma.numpy()


def _require_width(array: np.ndarray, d: int, what: str) -> None:
    if array.shape[-1] != d:
        raise BadInput(f"{what} have d={array.shape[-1]} but the reference has d={d}")


class ReferenceService:
    def __init__(self, store: Store, settings: Settings, metrics: ServiceMetrics) -> None:
        self.store = store
        self._settings = settings
        self._metrics = metrics
        self._device = settings.device or None
        self._replicas: dict[str, Replica] = {}
        self._compute = asyncio.Semaphore(settings.max_concurrent_compute)
        self._background: set[asyncio.Task[None]] = set()
        self._store_quiet_until = 0.0  # monotonic time before which reads do not ask the store

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every stored reference; an unreachable store only delays this to first use."""
        try:
            names = await self.store.list_names()
            self._store_ok()
            for name in names:
                await self.view(name)
        except StoreUnavailable as exc:
            self._store_failed(exc)
            log.warning("store unreachable at startup; references load on first use")

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.store.close()

    async def ready(self) -> int:
        """Number of references held; raises ``StoreUnavailable`` when the store is down."""
        try:
            await self.store.ping()
            names = await self.store.list_names()
        except StoreUnavailable as exc:
            self._store_failed(exc)
            raise
        self._store_ok()
        return len(names)

    # -- reads -------------------------------------------------------------------------------

    async def view(self, name: str, *, allow_stale: bool = True, wait: bool = True) -> View:
        """The reference caught up with the store, or as held when the store is unreachable
        (``stale``); a reference never seen cannot be served stale. ``wait=False``: while a
        catch-up runs, answer from the version held (see :meth:`Replica.sync`)."""
        replica = self._replicas.get(name)
        if replica is None:
            replica = self._replicas[name] = Replica(name, self.store, self._device)
        if allow_stale and replica.loaded and time.monotonic() < self._store_quiet_until:
            # The store failed moments ago: answer from the held version at once instead of
            # making every read wait for another connection attempt.
            return View(replica.state, stale=True)
        try:
            state = await replica.sync(wait=wait)
        except NotFound:
            self._forget(name)
            raise
        except StoreUnavailable as exc:
            if not replica.loaded:
                self._replicas.pop(name, None)  # never seen: nothing to serve, nothing to keep
                raise
            if not allow_stale:
                raise  # counted by the API's 503 handler
            self._store_failed(exc)
            return View(replica.state, stale=True)
        except StoreConflict as exc:  # changed underneath while loading (deleted, republished)
            raise Conflict(f"{exc}; retry") from exc
        self._store_ok()
        self._observe(name, state)
        return View(state, stale=False)

    def held_width(self, name: str) -> int | None:
        """The d of a reference this process holds, so a body can be refused by its header
        before it is read; None when not held (the checks after decoding still run)."""
        replica = self._replicas.get(name)
        return replica.state.meta.d if replica is not None and replica.loaded else None

    async def list_views(self) -> list[View]:
        try:
            names = await self.store.list_names()
        except StoreUnavailable as exc:
            self._store_failed(exc)
            names = sorted(name for name, r in self._replicas.items() if r.loaded)
        views = []
        for name in names:
            try:
                views.append(await self.view(name))
            except NotFound:  # deleted while listing
                continue
        return views

    async def rewards(
        self, name: str, groups: np.ndarray, params: RewardParams
    ) -> tuple[RewardResult, bool]:
        """Engine rewards for (G, K, d) ``groups`` and whether the version held was stale."""
        view = await self.view(name, wait=params.version is not None)
        engine = self._engine_of(view.state)
        g, k, _ = groups.shape
        _require_width(groups, engine.d, "groups")
        if g > self._settings.max_groups:
            raise PayloadTooLarge(f"{g} groups exceed the limit of {self._settings.max_groups}")
        if k > self._settings.max_group_size:
            raise PayloadTooLarge(
                f"groups of {k} exceed the limit of {self._settings.max_group_size}"
            )
        if k > engine.n:
            raise BadInput(f"groups of K={k} exceed the pool size N={engine.n}")
        self._check_pin(params.version, engine.version)
        result = await self._run(
            engine.rewards,
            groups,
            mode=params.mode,
            seed=params.seed,
            indices=params.indices,
            method=params.method,
        )
        self._check_pin(params.version, result.version)
        self._metrics.samples_rewarded.labels(name).inc(g * k)
        self._metrics.groups_rewarded.labels(name).inc(g)
        self._metrics.reward_compute.labels(name, params.method).observe(result.compute_seconds)
        return result, view.stale

    async def fd(self, name: str, features: np.ndarray) -> tuple[float, View]:
        view = await self.view(name, wait=False)
        state = view.state
        _require_width(features, state.meta.d, "features")
        if len(features) < 2:
            raise BadInput("fd needs at least 2 feature rows to fit a covariance")
        if state.engine is not None:
            value = await self._run(state.engine.fd, features)
        else:
            mu, sigma = np.array(state.target.mu), np.array(state.target.sigma)  # writable
            value = await self._run(lambda x: frechet_distance(*_fit(x), mu, sigma), features)
        return float(value), view

    # -- writes ------------------------------------------------------------------------------

    async def put_target(self, name: str, target: Target) -> View:
        d = len(target.mu)
        if target.sigma.shape != (d, d):
            raise BadInput(f"sigma has shape {target.sigma.shape}; expected ({d}, {d}) for mu")
        scale = max(float(np.abs(target.sigma).max()), 1e-300)
        if not np.allclose(target.sigma, target.sigma.T, rtol=0.0, atol=1e-8 * scale):
            raise BadInput("sigma is not symmetric; send a covariance matrix")
        try:
            await self.store.put_target(name, target, time.time())
        except StoreConflict as exc:
            raise Conflict(str(exc)) from exc
        return await self.view(name, allow_stale=False)

    async def fit_target(self, name: str, features: np.ndarray) -> View:
        if len(features) < 2:
            raise BadInput("fitting a target needs at least 2 feature rows")
        mu, sigma = await self._run(_fit, features)
        return await self.put_target(name, Target(mu, sigma))

    async def upload_pool(
        self, name: str, chunk: np.ndarray, *, first: bool, final: bool
    ) -> View | int:
        """Stage a chunk (``first`` starts a new upload); on ``final`` publish the staged rows.
        Returns the published view, or the rows staged so far."""
        state = (await self.view(name, allow_stale=False)).state
        _require_width(chunk, state.meta.d, "pool rows")
        staged_before = 0 if first else state.meta.staged_rows
        if not first and staged_before == 0:
            raise Conflict("no pool upload in progress: send the first chunk with PUT")
        if final and staged_before + len(chunk) < 2:
            raise BadInput("a pool needs at least 2 rows")
        incarnation = state.meta.incarnation
        try:
            staged = await self.store.stage_pool(name, incarnation, chunk, reset=first)
            if not final:
                return staged
            await self.store.publish_pool(name, incarnation, time.time())
        except StoreConflict as exc:
            raise Conflict(str(exc)) from exc
        return await self.view(name, allow_stale=False)

    async def commit(self, name: str, features: np.ndarray, key: str) -> CommitOutcome:
        state = (await self.view(name, allow_stale=False)).state
        engine = self._engine_of(state)
        _require_width(features, engine.d, "commit rows")
        if len(features) > engine.n:
            raise BadInput(f"{len(features)} commit rows exceed the pool size N={engine.n}")
        replica = self._replicas.get(name)
        if replica is None:  # deleted meanwhile
            raise NotFound(f"unknown reference {name!r}")
        try:
            ack = await self.store.append_commit(
                name,
                state.meta.incarnation,
                features,
                key,
                self._settings.idempotency_ttl_seconds,
                time.time(),
            )
        except StoreConflict as exc:
            raise Conflict(str(exc)) from exc
        state = await replica.sync()
        base_fd = replica.base_fd_at(ack.version)
        if base_fd is None:  # older than the history this replica keeps
            base_fd = self._engine_of(state).base_fd
        if not ack.replayed:
            self._metrics.commits.labels(name).inc()
            if ack.version % self._settings.snapshot_every == 0:
                self._spawn(self._snapshot(replica, state.meta.incarnation))
        return CommitOutcome(ack.version, float(base_fd), state.meta.n, ack.replayed)

    async def delete(self, name: str) -> None:
        existed = await self.store.delete(name)
        self._forget(name)
        if not existed:
            raise NotFound(f"unknown reference {name!r}")

    # -- helpers -----------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Engine work in a worker thread, at most ``max_concurrent_compute`` at once; the
        engine's ``ValueError`` is the caller's input problem."""
        async with self._compute:
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            except ValueError as exc:
                raise BadInput(str(exc)) from exc

    async def _snapshot(self, replica: Replica, incarnation: str) -> None:
        try:
            base = await replica.snapshot()
            if base is not None:
                await self.store.write_snapshot(replica.name, incarnation, base)
        except (StoreUnavailable, StoreConflict) as exc:
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

    def _observe(self, name: str, state: HeldState) -> None:
        self._metrics.pool_version.labels(name).set(state.version)
        self._metrics.pool_size.labels(name).set(state.meta.n)
        if state.engine is not None:
            self._metrics.base_fd.labels(name).set(float(state.engine.base_fd))

    def _store_ok(self) -> None:
        self._metrics.store_up.set(1)
        self._store_quiet_until = 0.0

    def _store_failed(self, exc: StoreUnavailable) -> None:
        self._metrics.store_errors.labels(exc.operation).inc()
        self._metrics.store_up.set(0)
        self._store_quiet_until = time.monotonic() + self._settings.store_probe_seconds

    def _forget(self, name: str) -> None:
        self._replicas.pop(name, None)
        self._metrics.forget_reference(name)
