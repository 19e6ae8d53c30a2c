"""The references this process holds, and its standing with the store: one :class:`Replica` per
reference, the catch-up that keeps them current, the stale-read policy and the store's health.

Every store call of the service goes through here, so store failures are counted once and turn
into service errors once: ``StoreUnavailable`` becomes :class:`~reward_service.errors.Unavailable`
(503) unless a held version may answer (reads; marked stale), and ``StoreConflict`` becomes
:class:`~reward_service.errors.Conflict` (409). After a failure, reads skip the store for
``store_probe_seconds`` instead of each waiting for another connection attempt.

A reference that cannot be loaded or caught up (stored data the engine refuses) is isolated: it
is reported (``unloadable``: readiness, metrics, the log) and answers 409 itself, while listing,
start-up and every other reference carry on. It is tried again when the store holds a newer
version of it (an admin replaced its pool or target).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import Conflict, NotFound, Unavailable
from ..metrics import ServiceMetrics
from ..settings import Settings
from ..store.base import ReferenceMeta, Store, StoreConflict, StoreUnavailable
from .freshness import FreshnessTracker
from .replica import HeldState, Replica
from .workers import WorkerThreads

__all__ = ["ReplicaSet", "View"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class View:
    """A reference as served: the held state, whether the store could confirm it, and the
    replica that holds it (still usable after the set has dropped it: a deletion or an
    isolation racing a request does not turn into "unknown reference" halfway through)."""

    state: HeldState
    stale: bool
    replica: Replica


_RETRY_UNLOADABLE_SECONDS = 60.0  # an unchanged reference that failed to load is tried again


@dataclass(frozen=True)
class _Unloadable:
    """Why a reference could not be loaded, at which stored version and when (monotonic)."""

    incarnation: str
    version: int
    reason: str
    failed_at: float


def _check_servable(state: HeldState) -> None:
    """A held version whose base FD is not a number cannot answer anything (its rewards and
    its info would carry NaN): treated like a reference that cannot be loaded."""
    if state.engine is not None and not math.isfinite(state.engine.base_fd):
        raise ValueError(f"the base FD at version {state.version} is {state.engine.base_fd}")


class ReplicaSet:
    """What this process holds of the stored references, and its standing with the store."""

    def __init__(
        self, store: Store, settings: Settings, metrics: ServiceMetrics, workers: WorkerThreads
    ) -> None:
        self._store = store
        self._workers = workers
        self._settings = settings
        self._metrics = metrics
        self._device = settings.device or None
        self._replicas: dict[str, Replica] = {}
        self._unloadable: dict[str, _Unloadable] = {}
        self._store_quiet_until = 0.0  # monotonic time before which reads do not ask the store

    @property
    def unloadable(self) -> list[str]:
        """References this process could not load, by name."""
        return sorted(self._unloadable)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every stored reference; an unreachable store only delays this to first use,
        and a reference that cannot be loaded is reported and skipped."""
        try:
            for name in await self.call(self._store.list_names()):
                try:
                    await self.view(name)
                except (NotFound, Conflict):  # deleted meanwhile, or reported as unloadable
                    continue
        except Unavailable:
            log.warning("store unreachable at startup; references load on first use")

    async def close(self) -> None:
        """Stop every replica's background work."""
        for name in list(self._replicas):
            await self._drop(name)

    async def ready(self) -> int:
        """Number of stored references; raises :class:`Unavailable` when the store is down."""
        await self.call(self._store.ping())
        return len(await self.call(self._store.list_names()))

    # -- store calls -------------------------------------------------------------------------

    async def call(self, operation: Awaitable[T]) -> T:
        """Await a store operation with store health kept and store errors translated."""
        try:
            result = await operation
        except StoreUnavailable as exc:
            raise self._store_failed(exc) from exc
        except StoreConflict as exc:
            raise Conflict(str(exc)) from exc
        self._store_ok()
        return result

    async def meta(self, name: str) -> ReferenceMeta:
        """The stored record of ``name`` (no engine needed: uploads to a reference that cannot
        be loaded must still work)."""
        meta = await self.call(self._store.read_meta(name))
        if meta is None:
            raise NotFound(f"unknown reference {name!r}")
        return meta

    # -- reads -------------------------------------------------------------------------------

    async def view(self, name: str, *, allow_stale: bool = True, wait: bool = True) -> View:
        """The reference caught up with the store, or as held when the store is unreachable
        (``stale``); a reference never seen cannot be served stale. ``wait=False``: while a
        catch-up runs, answer from the version held (see :meth:`Replica.sync`)."""
        replica = self._replicas.get(name)
        if replica is None:
            freshness = FreshnessTracker(
                self._settings.freshness_versions, self._settings.freshness_seconds
            )
            replica = Replica(
                name,
                self._store,
                self._device,
                freshness,
                self._workers,
                self._settings.rebuild_share,
                self._settings.build_lease_seconds if self._settings.share_builds else None,
            )
            self._replicas[name] = replica
        if allow_stale and replica.loaded and time.monotonic() < self._store_quiet_until:
            # The store failed moments ago: answer from the held version at once instead of
            # making every read wait for another connection attempt.
            return View(replica.state, True, replica)
        if name in self._unloadable:
            await self._refuse_unchanged(name)
        try:
            state = await replica.sync(wait=wait)
            _check_servable(state)
        except NotFound:
            await self.forget(name)
            raise
        except StoreUnavailable as exc:
            unavailable = self._store_failed(exc)
            if not replica.loaded:
                self._replicas.pop(name, None)  # never seen: nothing to serve, nothing to keep
            elif allow_stale:
                return View(replica.state, True, replica)
            raise unavailable from exc
        except StoreConflict as exc:  # changed underneath while loading (deleted, republished)
            raise Conflict(f"{exc}; retry") from exc
        except Exception as exc:  # stored data the engine cannot use: isolate this reference
            await self._isolate(name, exc)
            raise self._refusal(name) from exc
        self._store_ok()
        self._recovered(name)
        self._observe(name, state, replica)
        return View(state, False, replica)

    def held_meta(self, name: str) -> ReferenceMeta | None:
        """The record of a reference this process holds (no store access), so that a request
        can be refused by its feature space and its body by the d its header announces before
        the body is read; None when not held (the service then checks both itself)."""
        replica = self._replicas.get(name)
        return replica.state.meta if replica is not None and replica.loaded else None

    def held_lowrank_ready(self, name: str) -> bool:
        """Whether the pool held of ``name`` takes the low-rank path, so that a body can be
        priced by its header (``cost``); True when not held (the service prices it again)."""
        replica = self._replicas.get(name)
        engine = replica.state.engine if replica is not None and replica.loaded else None
        return engine is None or engine.lowrank_ready

    def replica(self, name: str) -> Replica:
        replica = self._replicas.get(name)
        if replica is None:  # deleted meanwhile
            raise NotFound(f"unknown reference {name!r}")
        return replica

    async def list_views(self) -> list[View]:
        """Every reference that can be served; unloadable ones are left out (and reported)."""
        try:
            names = await self.call(self._store.list_names())
        except Unavailable:
            names = sorted(name for name, r in self._replicas.items() if r.loaded)
        views = []
        for name in names:
            try:
                views.append(await self.view(name))
            except (NotFound, Conflict):  # deleted while listing, or unloadable
                continue
        return views

    async def forget(self, name: str) -> None:
        """Drop what is held of a deleted reference, its metric series included."""
        await self._drop(name)
        self._unloadable.pop(name, None)
        self._metrics.forget_reference(name)

    async def _drop(self, name: str) -> None:
        replica = self._replicas.pop(name, None)
        if replica is not None:
            await replica.close()

    # -- isolation ---------------------------------------------------------------------------

    async def _isolate(self, name: str, exc: Exception) -> None:
        # What the replica held may be half-updated: drop it, so that nothing serves from it.
        await self._drop(name)
        meta = await self.meta(name)
        reason = f"{type(exc).__name__}: {exc}"
        log.error("reference %s cannot be loaded at version %d: %s", name, meta.version, reason)
        self._unloadable[name] = _Unloadable(
            meta.incarnation, meta.version, reason, time.monotonic()
        )
        self._metrics.unloadable.labels(name).set(1)

    async def _refuse_unchanged(self, name: str) -> None:
        """Refuse at once while the stored reference is what failed to load, for a while: a
        new version (an admin's new pool or target) is tried at once, the same one again
        after ``_RETRY_UNLOADABLE_SECONDS`` (in case the failure was not the data's)."""
        meta = await self.meta(name)
        failed = self._unloadable[name]
        unchanged = (meta.incarnation, meta.version) == (failed.incarnation, failed.version)
        if unchanged and time.monotonic() - failed.failed_at < _RETRY_UNLOADABLE_SECONDS:
            raise self._refusal(name)

    def _refusal(self, name: str) -> Conflict:
        return Conflict(
            f"reference {name!r} cannot be loaded from the store "
            f"({self._unloadable[name].reason}); an admin can replace its pool or target, "
            "or delete it"
        )

    def _recovered(self, name: str) -> None:
        if self._unloadable.pop(name, None) is not None:
            log.info("reference %s loads again", name)
            self._metrics.unloadable.remove(name)

    # -- health ------------------------------------------------------------------------------

    def _observe(self, name: str, state: HeldState, replica: Replica) -> None:
        """Metrics of ``state``, which ``replica`` just synced: that one, not whichever the
        table holds now (a request that found the store down may have replaced it meanwhile
        with one not loaded yet)."""
        if replica.loaded:
            self._metrics.rebuilds.labels(name).inc(replica.take_rebuilds())
            self._metrics.adoptions.labels(name).inc(replica.take_adoptions())
            freshness = replica.freshness()
            self._metrics.pool_freshness.labels(name).set(freshness.share)
            turnover = freshness.turnover_calls
            self._metrics.pool_turnover.labels(name).set(math.inf if turnover is None else turnover)
        self._metrics.pool_version.labels(name).set(state.version)
        self._metrics.pool_size.labels(name).set(state.meta.n)
        if state.engine is not None:
            self._metrics.base_fd.labels(name).set(float(state.engine.base_fd))

    def _store_ok(self) -> None:
        self._metrics.store_up.set(1)
        self._store_quiet_until = 0.0

    def _store_failed(self, exc: StoreUnavailable) -> Unavailable:
        """Count the failure, start the quiet period; the error to raise where nothing held
        may answer instead."""
        self._metrics.store_errors.labels(exc.operation).inc()
        self._metrics.store_up.set(0)
        self._store_quiet_until = time.monotonic() + self._settings.store_probe_seconds
        retry = self._settings.retry_after_seconds
        return Unavailable(
            exc.operation, f"the store is unreachable ({exc.operation}); retry in {retry} s"
        )
