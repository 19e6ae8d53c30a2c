"""One reference as this process holds it: an engine at some version, kept current from the store.

Every replica reaches the same state the same way: load the base (pool, cursor, version), then
apply the log in order. ``sync`` is cheap when nothing changed (one metadata read); otherwise it
applies the missing entries under a lock. Commit entries are applied at once, a run of them in
one pass (statistics and a certified base FD per version from the built precompute); the new
version's O(d^3) precompute is built by one background rebuild at a time, which coalesces every
commit that arrived meanwhile, so rebuilds are bounded by rebuild time, not by the commit rate,
and paced to leave the cores to rewards part of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..engine import BuiltArrays, RewardEngine
from ..errors import NotFound
from ..store.base import (
    Base,
    LogEntry,
    ReferenceMeta,
    SharedBuild,
    Statistics,
    Store,
    StoreUnavailable,
    Target,
)
from .freshness import Freshness, FreshnessTracker
from .workers import WorkerThreads

__all__ = ["HeldState", "Replica"]

log = logging.getLogger(__name__)

_SHARED_BUILD_POLL_SECONDS = 0.2  # how often a process waiting for another's build looks
_BASE_FD_HISTORY = 65536  # versions whose base FD a replayed commit answer can still name


def _owned(array: np.ndarray) -> np.ndarray:
    """A private, writable float64 copy: the engine may keep (and change) what it is given,
    and stores hand out read-only arrays."""
    return np.array(array, dtype=np.float64)


def _compact(pool: np.ndarray) -> np.ndarray:
    """float32 when that holds every value exactly (pools uploaded and committed as float32),
    which halves what a snapshot stores; float64 otherwise."""
    narrow = pool.astype(np.float32)
    return narrow if np.array_equal(narrow, pool) else pool


def _commit_run(entries: list[LogEntry], version: int) -> list[LogEntry]:
    """The commit entries at the head of ``entries`` that follow ``version`` one by one."""
    run: list[LogEntry] = []
    for entry in entries:
        if entry.kind != "commit" or entry.version != version + len(run) + 1:
            break
        run.append(entry)
    return run


def _rows_of(entry: LogEntry) -> np.ndarray:
    if entry.features is None:
        raise ValueError(f"log entry {entry.log_id} is a commit without rows")
    return _owned(entry.features)


@dataclass(frozen=True)
class HeldState:
    """What a request works with: taken once, so a concurrent catch-up cannot tear it."""

    meta: ReferenceMeta
    target: Target
    engine: RewardEngine | None  # None until a pool is published

    @property
    def version(self) -> int:
        return self.engine.version if self.engine is not None else self.meta.version


class Replica:
    """The held state of one reference and the catch-up that keeps it current."""

    def __init__(
        self,
        name: str,
        store: Store,
        device: str | None,
        freshness: FreshnessTracker | None = None,
        workers: WorkerThreads | None = None,
        rebuild_share: float = 1.0,
        build_lease_seconds: float | None = None,
    ) -> None:
        """``workers``: the process's threads for engine calls (:mod:`.workers`); without
        them the replica runs its own at normal priority (tools that load one reference).
        ``rebuild_share``: most of the time the background rebuilds may take (see
        :meth:`_rebuild_loop`)."""
        self.name = name
        self._owns_workers = workers is None
        self._workers = workers if workers is not None else WorkerThreads(1, 1, niceness=0)
        self._freshness = freshness if freshness is not None else FreshnessTracker()
        self._store = store
        self._device = device
        self._lock = asyncio.Lock()
        # Held by a commit of this process from its check to its catch-up, so that each is
        # checked against the head it lands on (``ReferenceService.commit``).
        self.committing = asyncio.Lock()
        self._state: HeldState | None = None
        self._log_id = "0-0"
        self._epoch = store.epoch  # the store's epoch when what is held was read
        self._base_fds: OrderedDict[int, float] = OrderedDict()
        self._base_rows = 0  # rows committed in the reference's life up to the engine's start
        self._rebuilding: asyncio.Task[None] | None = None
        self._rebuild_share = rebuild_share
        # Sharing builds with the other processes of the store (None: every build here).
        self._build_lease = build_lease_seconds if store.kind != "memory" else None
        self._holder = secrets.token_hex(8)
        self._adoptions = 0
        self._rebuild_due = asyncio.Event()
        self._retired_rebuilds = 0  # precomputes built by engines this replica no longer holds
        self._reported_rebuilds = 0

    @property
    def state(self) -> HeldState:
        if self._state is None:
            raise RuntimeError("replica used before its first sync")
        return self._state

    @property
    def loaded(self) -> bool:
        return self._state is not None

    @property
    def rebuilds(self) -> int:
        """Version precomputes this replica has built (in the background or, where a commit
        could not be certified, on the spot)."""
        engine = self._state.engine if self._state is not None else None
        return self._retired_rebuilds + (engine.rebuilds if engine is not None else 0)

    def take_rebuilds(self) -> int:
        """Rebuilds since the last call, for a counter metric."""
        total = self.rebuilds
        fresh, self._reported_rebuilds = total - self._reported_rebuilds, total
        return max(fresh, 0)

    def take_adoptions(self) -> int:
        """Precomputes adopted from other processes since the last call, for a counter."""
        fresh, self._adoptions = self._adoptions, 0
        return fresh

    async def close(self) -> None:
        """Stop the background rebuild (a build already running in its thread finishes)."""
        task, self._rebuilding = self._rebuilding, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._owns_workers:
            self._workers.shutdown()

    def freshness(self) -> Freshness:
        """How much of the held pool recent commits replaced (see :mod:`.freshness`)."""
        state = self.state
        return self._freshness.at(state.version, state.meta.n)

    def record_call(self) -> None:
        """A reward call served here, for the pool's turnover (see :mod:`.freshness`)."""
        self._freshness.record_call()

    def record_committed(self, rows: int) -> None:
        """A commit of ``rows`` new rows acknowledged here, for the pool's turnover."""
        self._freshness.record_committed(rows)

    def rows_at(self, version: int) -> int:
        """Rows committed in the reference's life up to ``version``, a version the engine
        holds (:class:`~reward_service.engine.VersionNotHeld` otherwise), to tell how far a
        version lags the store's newest."""
        engine = self.state.engine
        return self._base_rows + (0 if engine is None else engine.rows_appended(version))

    def base_fd_at(self, version: int) -> float | None:
        """The base FD this replica computed at ``version`` (None when not kept)."""
        return self._base_fds.get(version)

    async def sync(self, *, wait: bool = True) -> HeldState:
        """Catch up with the store. With ``wait=False`` a request arriving while another one
        catches up keeps being served by the version held (the answer names it) instead of
        queueing behind the rebuild. Raises ``StoreUnavailable`` (nothing changed) or
        ``NotFound`` when the reference was deleted. After a failover (the store's epoch
        changed) the reference is loaded again: what was read from the former primary may hold
        commits its successor never received."""
        epoch = self._store.epoch
        meta = await self._store.read_meta(self.name)
        if meta is None:
            raise NotFound(f"unknown reference {self.name!r}")
        held = self._state
        # Current, and no catch-up halfway (the engine may hold a version whose log entry is
        # not yet recorded: its freshness, its base FD) unless the caller may not wait.
        settled = not (wait and self._lock.locked())
        if held is not None and epoch == self._epoch and self._is_current(held, meta) and settled:
            if self._is_newer(meta, held.meta):
                self._state = HeldState(meta, held.target, held.engine)
            return self.state
        if (
            not wait
            and self._lock.locked()
            and held is not None
            and held.meta.incarnation == meta.incarnation
        ):
            # Served as held, with the store's newer record: it says how far the answer lags.
            return (
                HeldState(meta, held.target, held.engine)
                if self._is_newer(meta, held.meta)
                else held
            )
        async with self._lock:
            held = self._state
            if held is None or held.meta.incarnation != meta.incarnation or epoch != self._epoch:
                await self._reload()
                self._epoch = epoch
            elif not self._is_current(held, meta):
                await self._replay()
            held = self.state
            if self._is_newer(meta, held.meta):
                self._state = HeldState(meta, held.target, held.engine)
            self._schedule_rebuild()
        return self.state

    async def snapshot(self) -> Base | None:
        """The held pool as a base to store (None without a pool); taken under the lock so the
        version, cursor, pool and log position belong together."""
        async with self._lock:
            engine = self.state.engine
            if engine is None:
                return None
            state = await self._workers.background(engine.state_dict)
            pool = state["pool"]
            return Base(
                version=int(state["version"]),
                pool=_compact(pool),
                cursor=int(state["cursor"]),
                log_id=self._log_id,
                statistics=Statistics(state["sum"], state["gram"], len(pool), state["shift"]),
                rows=self.rows_at(int(state["version"])),
            )

    @staticmethod
    def _is_newer(meta: ReferenceMeta, than: ReferenceMeta) -> bool:
        """Whether ``meta`` may replace the record held (same life, not older)."""
        return meta.incarnation == than.incarnation and meta.version >= than.version

    @staticmethod
    def _is_current(held: HeldState, meta: ReferenceMeta) -> bool:
        return held.meta.incarnation == meta.incarnation and held.version >= meta.version

    def _schedule_rebuild(self) -> None:
        """Start the background rebuild when the engine held has pending commits and none runs."""
        engine = self._state.engine if self._state is not None else None
        running = self._rebuilding is not None and not self._rebuilding.done()
        if engine is not None and engine.pending_rows and not running:
            self._rebuilding = asyncio.get_running_loop().create_task(self._rebuild_loop())

    async def _rebuild_loop(self) -> None:
        """Build the head's precompute until nothing is pending: each pass coalesces every
        commit applied while the previous one ran. After a build of ``t`` seconds the next
        waits ``t (1 / rebuild_share - 1)``, so that rebuilds leave the cores to rewards for
        the rest of the time, unless the rows pending make one due sooner (the engine's
        ``rebuild_due``: rewards grow dearer with them)."""
        while self._state is not None and self._state.engine is not None:
            engine = self._state.engine
            if not engine.pending_rows:
                return
            began = time.monotonic()
            try:
                built_here = await self._next_build(engine)
            except Exception:  # a background task: log, keep serving the head as it is
                log.exception("rebuild of %s failed", self.name)
                return
            self._rebuild_due.clear()
            if not built_here:
                continue
            pause = (time.monotonic() - began) * (1.0 / self._rebuild_share - 1.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._rebuild_due.wait(), pause)

    async def _next_build(self, engine: RewardEngine) -> bool:
        """One version precompute for ``engine``: adopted from the store where another process
        shared one this engine can take, else built here by the one process that claims the
        build (and shared), else, while another builds, a short wait for its build. Returns
        whether it built here. Without sharing (the memory store, or a store that fails) it
        builds here. A builder that dies holds the claim only ``build_lease_seconds``; requests
        never wait for it (the engine builds in place what a request cannot fold)."""
        lease = self._build_lease
        if lease is None:
            await self._workers.background(engine.rebuild)
            return True
        incarnation = self.state.meta.incarnation
        try:
            if await self._adopt_shared(engine, incarnation):
                return False
            claimed = await self._store.claim_build(self.name, incarnation, self._holder, lease)
        except StoreUnavailable:
            claimed = True  # nothing to share through: build here
        if not claimed:
            await asyncio.sleep(_SHARED_BUILD_POLL_SECONDS)
            return False
        try:
            await self._workers.background(engine.rebuild)
            arrays = await self._workers.background(engine.export_built)
            await self._store.share_build(
                self.name,
                incarnation,
                SharedBuild(
                    arrays.version,
                    arrays.base_fd,
                    {
                        "eigenvalues": arrays.eigenvalues,
                        "projector": arrays.projector,
                        "spectrum_matrix": arrays.spectrum_matrix,
                    },
                ),
            )
        except StoreUnavailable as exc:
            log.info("build of %s not shared: %s", self.name, exc)
        finally:
            with contextlib.suppress(StoreUnavailable):
                await self._store.release_build(self.name, incarnation, self._holder)
        return True

    async def _adopt_shared(self, engine: RewardEngine, incarnation: str) -> bool:
        """Adopt the store's shared precompute where it is newer than the engine's built
        version and a version the engine holds (checked again by the engine itself)."""
        version = await self._store.shared_build_version(self.name, incarnation)
        if version is None or not engine.built_version < version <= engine.version:
            return False
        shared = await self._store.read_shared_build(self.name, incarnation)
        if shared is None:
            return False
        try:
            arrays = BuiltArrays(
                version=shared.version,
                base_fd=shared.base_fd,
                eigenvalues=shared.arrays["eigenvalues"],
                projector=shared.arrays["projector"],
                spectrum_matrix=shared.arrays["spectrum_matrix"],
            )
        except KeyError:
            return False
        adopted: bool = await self._workers.background(engine.adopt, arrays)
        self._adoptions += adopted
        if not adopted:
            log.info("shared build %d of %s not adopted: another pool", version, self.name)
        return adopted

    def _hold(self, state: HeldState) -> None:
        """Hold ``state``, keeping the count of rebuilds of the engine it replaces."""
        old = self._state.engine if self._state is not None else None
        if old is not None and old is not state.engine:
            self._retired_rebuilds += old.rebuilds
        self._state = state

    async def _reload(self) -> None:
        """Load target and base from scratch, then replay the log after the base."""
        meta = await self._store.read_meta(self.name)
        if meta is None:
            raise NotFound(f"unknown reference {self.name!r}")
        target = await self._store.read_target(self.name)
        self._base_fds.clear()
        self._freshness.reset()
        if meta.n == 0:
            self._hold(HeldState(meta, target, None))
            self._log_id = "0-0"
            return
        base = await self._store.read_base(self.name)
        engine = await self._workers.background(self._build, target, base)
        self._base_rows = base.rows
        self._hold(HeldState(meta, target, engine))
        self._log_id = base.log_id
        self._remember(engine.version, engine.base_fd)
        await self._replay()

    def _build(self, target: Target, base: Base) -> RewardEngine:
        state: dict[str, object] = {
            "target_mu": _owned(target.mu),
            "target_sigma": _owned(target.sigma),
            "pool": _owned(base.pool),
            "cursor": base.cursor,
            "version": base.version,
        }
        statistics = base.statistics
        if statistics is not None and statistics.n == len(base.pool):
            # A snapshot's statistics, written with its pool: they spare the O(N d^2) pass
            # over the rows (the engine still recomputes them if their shift lost digits).
            state.update(
                shift=_owned(statistics.shift),
                sum=_owned(statistics.total),
                gram=_owned(statistics.gram),
            )
        return RewardEngine.from_state_dict(state, device=self._device)

    async def _replay(self) -> None:
        """Apply the log entries after the held position, in order; a run of commits in one
        call to the catch-up thread (one hop however far behind)."""
        entries = await self._store.read_log(self.name, self._log_id)
        while entries:
            entry, engine, version = entries[0], self.state.engine, self.state.version
            if entry.version <= version:
                self._log_id = entry.log_id
                entries = entries[1:]
                continue
            if entry.kind == "pool" or engine is None or entry.version != version + 1:
                # A new pool, or a gap (the log was trimmed behind a snapshot): start over.
                await self._reload()
                return
            if entry.kind == "commit":
                run = _commit_run(entries, version)
                rows = [_rows_of(applied) for applied in run]
                # If this raises, the entries the engine applied are skipped by version on the
                # next catch-up (their base FDs are not kept).
                committed = await self._workers.catch_up(engine.append_many, rows)
                for applied, features, made in zip(run, rows, committed, strict=True):
                    self._freshness.record(made.version, len(features))
                    self._log_id = applied.log_id
                    self._remember(made.version, made.base_fd)
                if engine.rebuild_due:
                    self._rebuild_due.set()
                entries = entries[len(run) :]
                continue
            # "target": same pool, new target statistics.
            target = await self._store.read_target(self.name)
            held_rows = self.rows_at(version)
            engine = await self._workers.background(self._retarget, engine, target, entry.version)
            self._base_rows = held_rows
            self._hold(HeldState(self.state.meta, target, engine))
            self._log_id = entry.log_id
            self._remember(engine.version, engine.base_fd)
            entries = entries[1:]

    def _retarget(self, engine: RewardEngine, target: Target, version: int) -> RewardEngine:
        state = engine.state_dict()
        state.update(
            target_mu=_owned(target.mu), target_sigma=_owned(target.sigma), version=version
        )
        return RewardEngine.from_state_dict(state, device=self._device)

    def _remember(self, version: int, base_fd: float) -> None:
        self._base_fds[version] = float(base_fd)
        while len(self._base_fds) > _BASE_FD_HISTORY:
            self._base_fds.popitem(last=False)
