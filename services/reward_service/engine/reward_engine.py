"""Subset-replace rewards against a Fréchet target, and a pool that commits at the speed of
rewards, in float64.

A pool of N generated features moves the Fréchet distance to the target from ``FD_0`` to
``FD_I(Y)`` when a group ``Y`` (K x d) replaces rows ``I``; the group's reward is
``FD_0 - FD_I(Y)``. :mod:`.replacement` computes it from a *built* version's precompute (``M =
A S A = Q diag(lam) Q^T``, ``B = Q^T A``, one O(d^3) eigendecomposition), exactly (one
``eigvalsh`` per group) or by certified low-rank quadrature (O(n d r^2)) with exact fallback.

Versions. A commit writes its rows into the ring and makes a new *head* version at once: its
base FD comes from the last built precompute, with the net change since it ("remove the built
rows at the touched positions, add the current ones", rank ``2P + 1``) as one low-rank update,
certified like a reward; where that is not possible (rank beyond the limit, an uncertified
result, or a change that cancels most of the pool's scatter) the head is built on the spot.
Rewards for the head fold the same pending change into each group's update (rank ``2(P + K) +
1``). :meth:`RewardEngine.rebuild` builds one precompute for the head however many commits it is
ahead (coalescing), beside the one being served, and swaps it in. Every result names the version
it was computed for.

Statistics are kept about a shift with a rounding-error bound (:mod:`.statistics`): a build
updates them by the net change, or recomputes them from the rows when the bound says they have
lost digits, so whatever passed through the ring the base FD stays that of the rows held.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from .addition import Addition, exact_additions, factored_additions, lowrank_additions
from .adoption import BuiltArrays, NotAdoptable, check_adopted
from .certification import (
    certified_head,
    certified_run,
    factor_of,
    fits,
    holds,
    projected,
    settle,
    shown_regular,
)
from .choices import CREDIT_FORMS, METHODS, CreditForm, Method, Mode
from .degenerate import DegeneratePool
from .history import VersionHistory, VersionNotHeld
from .linalg import (
    as_float64,
    frechet_from_terms,
    gaussian_of,
    resolve_device,
    single_threaded,
    trace_sqrt_psd,
)
from .lowrank import QuadratureSettings
from .pending import PendingFactor
from .replacement import Replacement, exact_rewards, lowrank_rewards
from .results import Committed, CreditResult, PoolStatistics, RewardResult, advantages_of
from .selection import choose_rows
from .statistics import ShiftedSums
from .validation import check_features, check_groups
from .versions import Built, Changes, Head, TargetTerms

__all__ = ["STATISTICS_RTOL", "RewardEngine"]

STATISTICS_RTOL = 1e-12
"""Statistics whose rounding-error bound exceeds this fraction of the covariance (or of a
standard deviation, for the mean) are recomputed from the rows at the next build; well inside
the 1e-9 relative agreement with a from-scratch recompute that the engine promises."""


@dataclass(frozen=True)
class _Step:
    """A commit worked out against ``head`` (and the cursor that goes with it) but not swapped
    in: ``ys`` go to ``positions``, which held ``before``, and make ``successor``."""

    head: Head
    ys: torch.Tensor
    positions: torch.Tensor
    before: torch.Tensor
    successor: Head

    @property
    def built(self) -> bool:
        """Whether the new head was built here (not certified from the built precompute)."""
        return self.successor.built.version == self.successor.version

    @property
    def committed(self) -> Committed:
        """What the commit answers: the new head's version and base FD, and how it came."""
        return Committed(
            version=self.successor.version,
            base_fd=self.successor.base_fd,
            method="exact" if self.built else "lowrank",
            error_estimate=self.successor.base_error,
            pending_rows=self.successor.changes.rows,
        )


class RewardEngine:
    """Holds a target, a pool and its versions; computes subset-replace rewards and rolls the
    pool. Thread-safe: rewards run concurrently with each other, with commits (one at a time)
    and with one rebuild at a time.

    ``device``: ``None`` picks CUDA when available, else CPU. All reward arithmetic is float64.
    ``statistics``: ``(shift, sum, gram)`` as :meth:`state_dict` gives them, trusted as
    computed from ``pool_features`` (computed from the rows when ``None``).
    """

    def __init__(
        self,
        target_mu: Any,
        target_sigma: Any,
        pool_features: Any,
        device: str | torch.device | None = None,
        version: int = 0,
        quadrature: QuadratureSettings | None = None,
        *,
        cursor: int = 0,
        statistics: tuple[Any, Any, Any] | None = None,
    ) -> None:
        self._device = resolve_device(device)
        mu = as_float64(target_mu, self._device, "target_mu")
        if mu.ndim != 1 or mu.shape[0] < 1:
            raise ValueError(f"target_mu must have shape (d,); got {tuple(mu.shape)}")
        d = mu.shape[0]
        sigma = as_float64(target_sigma, self._device, "target_sigma")
        if tuple(sigma.shape) != (d, d):
            raise ValueError(f"target_sigma must have shape ({d}, {d}); got {tuple(sigma.shape)}")
        for name, value in (("target_mu", mu), ("target_sigma", sigma)):
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} contains NaN or Inf")
        pool = as_float64(pool_features, self._device, "pool_features")
        check_features(pool, d, "pool_features", min_rows=2)
        if not 0 <= cursor < pool.shape[0]:
            raise ValueError(f"cursor must lie in [0, {pool.shape[0]}); got {cursor}")
        self._settings = quadrature or QuadratureSettings()
        self._target = TargetTerms.of(mu, sigma)
        self._pool = pool.clone()
        self._cursor = cursor
        if statistics is None:
            sums = ShiftedSums.of_rows(self._pool)
        else:
            shift, total, gram = (
                as_float64(value, self._device, name)
                for value, name in zip(statistics, ("shift", "sum", "gram"), strict=True)
            )
            if tuple(shift.shape) != (d,) or tuple(total.shape) != (d,):
                raise ValueError(f"statistics must be (shift (d,), sum (d,), gram (d, d)), d={d}")
            if tuple(gram.shape) != (d, d):
                raise ValueError(f"statistics must be (shift (d,), sum (d,), gram (d, d)), d={d}")
            sums = ShiftedSums(shift, total, gram, self._pool.shape[0])
            if sums.stale(STATISTICS_RTOL):  # raw sums far from the origin (a zero shift)
                sums = ShiftedSums.of_rows(self._pool)
        self._head = Head.at(Built.build(version, sums, self._target))
        # Lock order: rebuild, then commit, then swap. The swap lock guards the pool rows, the
        # cursor and the head together and is held only for gathers and pointer swaps; the
        # commit lock serialises commits; the rebuild lock lets one build run at a time, its
        # O(d^3) part outside the other two.
        self._swap_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._rebuild_lock = threading.Lock()
        # While a rebuild runs: the rows changed since the head it builds.
        self._later: Changes | None = None
        # The last head's factorisation completed by its mean column, for added samples.
        self._completed: tuple[Head, PendingFactor] | None = None
        # Recent heads by version, each with the rows appended before it (see _held_head).
        self._appended = 0
        self._history = VersionHistory(d)
        self._history.keep(self._head, self._appended)
        self._rebuilds = 0
        self._adoptions = 0
        # The commit :meth:`check_commit` worked out last, for :meth:`append` of the same rows
        # onto the same head (guarded by the commit lock).
        self._checked: _Step | None = None

    # ----------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def d(self) -> int:
        return int(self._target.mean.shape[0])

    @property
    def n(self) -> int:
        return self._head.built.n

    @property
    def version(self) -> int:
        """The newest version (the head), which rewards and commits work on."""
        return self._head.version

    @property
    def built_version(self) -> int:
        """The version whose precompute is built; at most :attr:`version`."""
        return self._head.built.version

    @property
    def pending_rows(self) -> int:
        """Pool rows changed since the built version (0 when the head is built)."""
        return self._head.changes.rows

    @property
    def lowrank_ready(self) -> bool:
        """Whether rewards of the head can take the low-rank path: ``M`` of the built version is
        not numerically singular (``min_relative_eigenvalue``). Where it is (N <= d, or rows
        spanning fewer than d directions) every group is computed exactly."""
        return not self._settings.singular(self._head.built.eigenvalues)

    @property
    def rebuild_due(self) -> bool:
        """Whether the pending rows take half the rank a reward update may have on the
        low-rank path (``max_rank_fraction``): rewards of large groups then cost several times
        what they cost against a built version, and past it they wait for a rebuild."""
        pending = self._head.changes.rows
        return pending > 0 and not self._fits(2 * pending)

    @property
    def rebuilds(self) -> int:
        """Precomputes built since construction (by :meth:`rebuild` or by a commit)."""
        return self._rebuilds

    @property
    def adoptions(self) -> int:
        """Precomputes taken from elsewhere (:meth:`adopt`) since construction."""
        return self._adoptions

    @property
    def base_fd(self) -> float:
        """FD of the head pool to the target."""
        return self._head.base_fd

    @property
    def cursor(self) -> int:
        """The next pool row a commit replaces (ring order: oldest first)."""
        return self._cursor

    def _fits(self, rows: int) -> bool:
        return fits(self._settings, self.d, rows)

    def _holds(self, rows: int) -> bool:
        return holds(self._settings, self.d, rows)

    def rows_appended(self, version: int | None = None) -> int:
        """Rows appended since this engine was made, up to ``version`` (None: the head); a
        version not held raises :class:`VersionNotHeld`."""
        with self._swap_lock:
            if version is None or version == self._head.version:
                return self._appended
            kept = self._history.get(version)
            if kept is None:
                raise VersionNotHeld(f"version {version} is not held")
            return kept[1]

    @property
    def held_versions(self) -> tuple[int, int]:
        """The oldest and newest versions per-sample credits can be asked for."""
        with self._swap_lock:
            return self._history.oldest, self._head.version

    def _held_head(self, version: int | None) -> tuple[Head, torch.Tensor]:
        """Under the swap lock: the head of ``version`` (None: the newest) and the rows it
        held at its pending positions. A kept head's rows are read from the ring, which is
        right while the rows appended since it have not wrapped onto them."""
        head = self._head
        if version is None or version == head.version:
            return head, self._pool[head.changes.positions]
        kept = self._history.get(version)
        if kept is None:
            oldest = self._history.oldest
            raise VersionNotHeld(
                f"version {version} is not held: credits can be asked for versions "
                f"{oldest} to {head.version}"
            )
        head, appended = kept
        if self._appended - appended + head.changes.rows > head.built.n:
            raise VersionNotHeld(f"version {version} is not held: the ring has moved past it")
        return head, self._pool[head.changes.positions]

    # ----------------------------------------------------------------- rewards
    def rewards(
        self,
        groups: Any,
        mode: Mode = "shared",
        seed: int | None = None,
        indices: Any = None,
        method: Method = "lowrank",
    ) -> RewardResult:
        """Subset-replace rewards of ``groups`` (G, K, d) against the head pool version.

        ``mode``: ``shared`` (one random row set for all groups), ``independent`` (one per
        group) or ``indices`` (the caller's rows, (K,) or (G, K)). ``seed`` makes the draw
        reproducible and is echoed (drawn when ``None``). ``method``: ``lowrank`` (certified
        fast path, exact fallback per group) or ``exact``. While the head is ahead of the
        built version, the pending commits are folded into every group's update; when they
        would push the update beyond the low-rank limit, or cannot be folded in without losing
        digits, the call builds the head first (or waits for the build in flight).
        """
        started = time.perf_counter()
        ys = as_float64(groups, self._device, "groups")
        check_groups(ys, self.d)
        return self._scored(ys, mode, seed, indices, method, started)

    def _scored(
        self,
        ys: torch.Tensor,
        mode: Mode,
        seed: int | None,
        indices: Any,
        method: Method,
        started: float,
    ) -> RewardResult:
        """:meth:`rewards` of checked float64 ``ys`` (G, K, d); ``started`` times the call."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        count, size = ys.shape[0], ys.shape[1]
        head, rows, used_seed, terms = self._group_terms(ys, mode, seed, indices)
        if self._needs_build(head, terms, size, method):
            # Let the rebuild in flight land first: the rows pending after it may fit.
            with self._rebuild_lock:
                pass
            head, rows, used_seed, terms = self._group_terms(ys, mode, used_seed, indices)
            if self._needs_build(head, terms, size, method):
                self.rebuild()
                head, rows, used_seed, terms = self._group_terms(ys, mode, used_seed, indices)
        rewards, errors, certified = settle(
            head,
            count,
            self._settings,
            lowrank=(
                (lambda: lowrank_rewards(head.built, terms, self._settings))
                if method == "lowrank" and self._fits(head.changes.rows + size)
                else None
            ),
            exact=lambda chosen: exact_rewards(head.built, terms.select(chosen), self._target),
        )
        return RewardResult(
            fds=head.base_fd - rewards,
            rewards=rewards,
            advantages=advantages_of(rewards),
            indices=np.array(rows),
            seed=used_seed,
            mode=mode,
            method=method,
            methods_used=certified,
            error_estimates=errors,
            version=head.version,
            base_fd=head.base_fd,
            compute_seconds=time.perf_counter() - started,
        )

    def _needs_build(self, head: Head, terms: Replacement, size: int, method: Method) -> bool:
        """Whether groups of ``size`` rows want the head built first: its pending rows push
        them past the low-rank limit, or cannot be folded in without losing digits."""
        pending = head.changes.rows
        if not pending:
            return False
        too_far = method == "lowrank" and self._fits(size) and not self._fits(pending + size)
        return too_far or not bool(terms.trusted.all())

    def _group_terms(
        self, ys: torch.Tensor, mode: Mode, seed: int | None, indices: Any
    ) -> tuple[Head, np.ndarray, int | None, Replacement]:
        """The head, the rows replaced, the seed used and each group's replacement relative to
        the built version: remove the built rows at the pending positions and the head's rows
        at ``I``, add the head's rows at the pending positions and the group."""
        count, size = ys.shape[0], ys.shape[1]
        with self._swap_lock:
            head = self._head
            rows, used_seed = choose_rows(mode, count, size, head.built.n, seed, indices)
            distinct = rows[:1] if mode == "shared" else rows
            replaced = self._pool[torch.as_tensor(distinct, device=self._device)]
            current = self._pool[head.changes.positions]
        originals = head.changes.originals.expand(replaced.shape[0], -1, -1)
        removed = torch.cat([originals, replaced], dim=1)
        terms = Replacement.of(head.built, removed, current, ys, self._target)
        return head, rows, used_seed, terms

    def credits(
        self,
        samples: Any,
        form: CreditForm = "add",
        row: int | None = None,
        seed: int | None = None,
        method: Method = "lowrank",
        version: int | None = None,
    ) -> CreditResult:
        """Per-sample credit of each of the B ``samples`` (B, d) against the head pool, or
        against the pool of a recent ``version`` (``add`` only: :attr:`held_versions`;
        :class:`VersionNotHeld` otherwise).

        ``form`` ``add`` (the default): ``FD_0 - FD`` of the pool with the sample added
        (:mod:`.addition`); it involves no pool row, so one sample at one version has one
        credit on every rank, replica and call. ``replace``: ``FD_0 - FD`` of the pool with
        one row replaced by the sample, the same row for every sample (``row``, or drawn from
        ``seed``): subset-replace with groups of one. Either way one batched request: the
        pending commits (and the replaced row) are shared by every sample, and each sample's
        own part of the update has rank 1 (``add``) or 2 (``replace``), one small Schur
        complement per quadrature node. Certified, with exact fallback, like :meth:`rewards`.
        """
        started = time.perf_counter()
        if form not in CREDIT_FORMS:
            raise ValueError(f"form must be one of {', '.join(CREDIT_FORMS)}; got {form!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        if row is not None and seed is not None:
            raise ValueError("send either row or seed: a seed only draws the row")
        if form == "add" and (row is not None or seed is not None):
            raise ValueError("row and seed choose a replaced row: only with form 'replace'")
        values = as_float64(samples, self._device, "samples")
        if values.ndim != 2:
            raise ValueError(f"samples must have shape (B, {self.d}); got {tuple(values.shape)}")
        check_features(values, self.d, "samples", min_rows=1)
        if form == "add":
            return self._added(values, method, started, version)
        if version is not None and version != self.version:
            raise VersionNotHeld(f"replace-form credits are computed at the head, {self.version}")
        groups = values.unsqueeze(1)
        if row is None:
            result = self._scored(groups, "shared", seed, None, method, started)
        else:
            result = self._scored(groups, "indices", None, [row], method, started)
        return CreditResult.of_groups_of_one(result)

    def _added(
        self, values: torch.Tensor, method: Method, started: float, version: int | None
    ) -> CreditResult:
        """:meth:`credits` of checked float64 ``values`` (B, d) in the ``add`` form.

        Against a head with pending commits the samples' columns are appended to the head's
        own factorisation (kept for commits, completed by its mean column once per head), so
        a request costs linearly in the pending rows; without that factorisation the pending
        columns are factored per request, within the low-rank limit."""
        head, terms = self._addition_terms(values, version)
        newest = version is None or version == self.version
        if newest and self._addition_needs_build(head, terms):
            # Let the rebuild in flight land first: what is pending after it may fit.
            with self._rebuild_lock:
                pass
            head, terms = self._addition_terms(values, version)
            if self._addition_needs_build(head, terms):
                self.rebuild()
                head, terms = self._addition_terms(values, version)
        built = head.built
        lowrank: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None
        if method == "lowrank":
            factor = self._head_factor(head, terms)
            if factor is not None:
                change = terms.head_root_change(built, head.base_fd)
                lowrank = partial(factored_additions, built, factor, terms, change)
            elif self._fits(head.changes.rows + 1) and terms.trusted:
                lowrank = partial(lowrank_additions, built, terms, self._settings)
        rewards, errors, used = settle(
            head,
            values.shape[0],
            self._settings,
            lowrank=lowrank,
            exact=lambda chosen: exact_additions(built, terms.select(chosen), self._target),
        )
        return CreditResult(
            rewards=rewards,
            advantages=advantages_of(rewards),
            fds=head.base_fd - rewards,
            form="add",
            row=None,
            seed=None,
            method=method,
            methods_used=used,
            error_estimates=errors,
            version=head.version,
            base_fd=head.base_fd,
            compute_seconds=time.perf_counter() - started,
        )

    def _addition_needs_build(self, head: Head, terms: Addition) -> bool:
        """Whether the head's pending rows cannot be folded into added samples: they lose
        digits relative to the built version, or neither the head's factorisation nor the
        low-rank limit takes them."""
        if not head.changes.rows:
            return False
        foldable = head.factor is not None or self._fits(head.changes.rows + 1)
        return not (terms.trusted and foldable)

    def _head_factor(self, head: Head, terms: Addition) -> PendingFactor | None:
        """The head's factorisation completed by its mean column (:meth:`Addition.head_factor`),
        made once per head; None when nothing is pending or the head keeps no factorisation."""
        if not head.changes.rows or head.factor is None or not terms.trusted:
            return None
        cached = self._completed
        if cached is not None and cached[0] is head:
            return cached[1]
        with single_threaded():  # skinny products and small factorisations
            factor = terms.head_factor(head.built, head.factor)
        if head is self._head:
            self._completed = (head, factor)
        return factor

    def _addition_terms(
        self, values: torch.Tensor, version: int | None = None
    ) -> tuple[Head, Addition]:
        """The head of ``version`` (None: the newest) and ``values`` added to it, relative to
        its built version."""
        with self._swap_lock:
            head, current = self._held_head(version)
        terms = Addition.of(head.built, head.changes.originals, current, values, self._target)
        return head, terms

    # ----------------------------------------------------------------- commits
    def append(self, features: Any) -> Committed:
        """Roll the pool: ``features`` (K, d) replace the K oldest rows (ring order), making a
        new head version at once. Its base FD comes certified from the built precompute
        (O(n d P^2) for P pending rows); where it cannot, the version is built here (O(d^3)).
        Rewards serve the new version immediately; :meth:`rebuild` folds it into a precompute.
        """
        ys = as_float64(features, self._device, "features")
        check_features(ys, self.d, min_rows=1)
        if not self._holds(self._head.changes.rows + ys.shape[0]) and self._rebuild_lock.locked():
            # Too far ahead for the low-rank path: let the build in flight land first rather
            # than build the same version twice.
            with self._rebuild_lock:
                pass
        with self._commit_lock:
            step = self._step(ys)
            successor, positions = step.successor, step.positions
            if step.built:
                self._rebuilds += 1
            with self._swap_lock:
                self._pool[positions] = ys
                self._cursor = (self._cursor + ys.shape[0]) % step.head.built.n
                self._head = successor
                self._appended += ys.shape[0]
                self._history.keep(successor, self._appended)
                if self._later is not None:
                    self._later = self._later.then(positions, step.before)[0]
        return step.committed

    def check_commit(self, features: Any) -> Committed | None:
        """Raise :class:`DegeneratePool` where :meth:`append` of ``features`` would make ``M``
        of the pool numerically singular while the version served is not (every reward would
        then fall back to the exact path); change nothing. A pool singular already (N <= d)
        takes any commit (None: nothing worked out). Returns what :meth:`append` of the same
        rows onto the same head will answer, so that a commit can be acknowledged with its base
        FD before it is applied.

        The new head is worked out as :meth:`append` works it out, and kept: an append of the
        same rows onto the same head then costs nothing more. A head certified from the built
        precompute has its spectrum in ``[lo, hi]`` by the certificate (inertia below, Weyl
        above), which shows ``M`` regular at no cost when ``lo / hi`` clears the limit by
        :data:`REGULARITY_MARGIN`; otherwise, as where the commit is built anyway, the head is
        built here (O(d^3)) and its eigenvalues decide."""
        ys = as_float64(features, self._device, "features")
        check_features(ys, self.d, min_rows=1)
        with self._commit_lock:
            if self._settings.singular(self._head.built.eigenvalues):
                return None
            step = self._step(ys, regular=True)
            eigenvalues = step.successor.built.eigenvalues
            if step.built and self._settings.singular(eigenvalues):
                top = float(eigenvalues[-1])
                ratio = float(eigenvalues[0]) / top if top > 0.0 else math.nan
                raise DegeneratePool(len(ys), ratio, self._settings.min_relative_eigenvalue)
            self._checked = step
        return step.committed

    def _step(self, ys: torch.Tensor, *, regular: bool = False) -> _Step:
        """Under the commit lock: ``ys`` committed onto the head, worked out but not swapped
        in (the step :meth:`check_commit` kept, where it is for these rows and this head). The
        new head is certified from the built precompute where it can be, else built here;
        ``regular``: built also where its certificate does not show its ``M`` regular."""
        head = self._head
        checked, self._checked = self._checked, None
        if checked is not None and checked.head is head and torch.equal(checked.ys, ys):
            return checked
        size, n = ys.shape[0], head.built.n
        if size > n:
            raise ValueError(f"a commit of {size} rows exceeds the pool of N={n}")
        positions = (self._cursor + torch.arange(size, device=self._device)) % n
        before = self._pool[positions]
        changes, slots = head.changes.then(positions, before)
        current = self._pool[changes.positions]
        current[slots] = ys
        with single_threaded():  # skinny products and small factorisations
            held = self._pool[head.changes.positions]
            successor = certified_head(head, held, changes, current, self._target, self._settings)
        if successor is None or (regular and not shown_regular(successor, self._settings)):
            successor = self._built_head(head, changes, current)
        return _Step(head, ys, positions, before, successor)

    def append_many(self, batches: Sequence[Any]) -> list[Committed]:
        """:meth:`append` of each of ``batches`` in order, with the same versions and base FDs,
        in one pass where it can: one extension of the pending factorisation by all of their
        rows, each version's base FD certified from its prefix
        (:meth:`PendingFactor.extended_changes`), so that a replica catching up on many
        commits pays for the shared work once. One by one where the pass does not hold: a
        position touched twice (the ring wrapping onto pending rows), the pending rows past
        the low-rank limit, a version it cannot certify."""
        rows = [as_float64(batch, self._device, "features") for batch in batches]
        for ys in rows:
            check_features(ys, self.d, min_rows=1)
        if len(rows) > 1:
            with self._commit_lock:
                committed = self._append_in_one_pass(rows)
            if committed is not None:
                return committed
        return [self.append(ys) for ys in rows]

    def _append_in_one_pass(self, rows: list[torch.Tensor]) -> list[Committed] | None:
        """Under the commit lock: :meth:`append_many`'s single pass, or None (nothing
        changed) where it does not hold."""
        head = self._head
        built, pending = head.built, head.changes.rows
        sizes = [ys.shape[0] for ys in rows]
        total = sum(sizes)
        if total + pending > built.n or not self._holds(pending + total):
            return None
        positions = (self._cursor + torch.arange(total, device=self._device)) % built.n
        if bool(torch.isin(positions, head.changes.positions).any()):
            return None
        before = self._pool[positions]
        ys = torch.cat(rows)
        factor = head.factor
        if factor is None and not pending:  # the head is built: start a factorisation
            spread = float(projected(built, ys).square().sum()) / (built.n - 1)
            factor = PendingFactor.start(built.eigenvalues, spread, self._settings)
        if factor is None:
            return None
        changes = head.changes.then(positions, before)[0]
        current = torch.cat([self._pool[head.changes.positions], ys])
        ends = np.cumsum(sizes).tolist()
        with single_threaded():  # skinny products and small factorisations
            run = certified_run(head, factor, changes, current, ends, self._target, self._settings)
        if run is None:
            return None
        factor, certified = run
        base_fd, error = certified[-1]
        with self._swap_lock:
            self._pool[positions] = ys
            self._cursor = (self._cursor + total) % built.n
            self._head = Head(head.version + len(rows), built, changes, base_fd, error, factor)
            # The run's earlier versions too (without a factorisation of their own: a request
            # at one of them factors its prefix of the changes), so that every version of the
            # run can be asked for, as on a replica that applied the commits one by one.
            before_run = self._appended
            for j, ((fd, estimate), end) in enumerate(zip(certified[:-1], ends, strict=False)):
                prefix = Changes(
                    changes.positions[: pending + end], changes.originals[: pending + end]
                )
                self._appended = before_run + end
                self._history.keep(
                    Head(head.version + j + 1, built, prefix, fd, estimate), self._appended
                )
            self._appended = before_run + total
            self._history.keep(self._head, self._appended)
            if self._later is not None:
                self._later = self._later.then(positions, before)[0]
        return [
            Committed(
                version=head.version + j + 1,
                base_fd=fd,
                method="lowrank",
                error_estimate=estimate,
                pending_rows=pending + end,
            )
            for j, ((fd, estimate), end) in enumerate(zip(certified, ends, strict=True))
        ]

    def commit(self, features: Any) -> int:
        """:meth:`append` and :meth:`rebuild`: returns the new version once it is built."""
        version = self.append(features).version
        self.rebuild()
        return version

    def _built_head(self, head: Head, changes: Changes, current: torch.Tensor) -> Head:
        """The next head, built here from its own statistics (under the commit lock)."""

        def rows() -> torch.Tensor:
            pool = self._pool.clone()
            pool[changes.positions] = current
            return pool

        return Head.at(self._build(head.version + 1, head.built.sums, changes, current, rows))

    def _build(
        self,
        version: int,
        sums: ShiftedSums,
        changes: Changes,
        current: torch.Tensor,
        rows: Callable[[], torch.Tensor],
    ) -> Built:
        """Statistics of ``version`` (``sums`` with ``changes`` applied, or recomputed from
        ``rows()`` when the update would leave them with lost digits) and its precompute."""
        updated = sums.replaced(changes.originals, current)
        if updated.stale(STATISTICS_RTOL):
            updated = ShiftedSums.of_rows(rows())
        return Built.build(version, updated, self._target)

    def rebuild(self) -> int:
        """Build the precompute of the head, however many commits it is ahead of the built
        version, and swap it in; commits and rewards go on meanwhile (those that arrive are
        pending relative to it). One rebuild runs at a time; returns the version built (the
        head's when nothing was pending)."""
        with self._rebuild_lock:
            with self._commit_lock:
                head = self._head
                if not head.changes.rows:
                    return head.version
                current = self._pool[head.changes.positions]
                self._later = Changes.none(self.d, self._device)
            swapped = self._swapped_in(
                lambda: self._build(
                    head.version, head.built.sums, head.changes, current, self._rows_of_head
                )
            )
            return self._head.built.version if swapped is None else swapped

    def export_built(self) -> BuiltArrays:
        """The built version's precompute, for other processes to :meth:`adopt`."""
        return BuiltArrays.of(self._head.built)

    def adopt(self, arrays: BuiltArrays) -> bool:
        """Take ``arrays``, a version built elsewhere, as this engine's built version, as
        :meth:`rebuild` would have built it: O(P d^2) for the statistics of the P rows changed
        since the built version instead of the O(d^3) eigendecomposition. Adopted only where
        it is a version this engine holds, newer than its built one and on it (the commits
        since kept pending on the adopted one), and where it agrees with this engine's rows
        (:data:`ADOPTION_RTOL`); returns whether it was."""
        if not arrays.fits(self.d):
            return False
        with self._rebuild_lock:
            with self._commit_lock:
                head = self._head
                kept = self._history.get(arrays.version)
                if kept is None or not head.built.version < arrays.version <= head.version:
                    return False
                target, appended = kept
                count = target.changes.rows
                if (
                    target.built is not head.built
                    or not torch.equal(head.changes.positions[:count], target.changes.positions)
                    or self._appended - appended + count > head.built.n
                ):
                    return False
                current = self._pool[target.changes.positions]
                self._later = Changes(
                    head.changes.positions[count:], head.changes.originals[count:]
                )

            def adopted() -> Built:
                updated = target.built.sums.replaced(target.changes.originals, current)
                if updated.stale(STATISTICS_RTOL):
                    updated = ShiftedSums.of_rows(self._rows_of_head())
                tensors = (
                    as_float64(value, self._device, name)
                    for value, name in (
                        (arrays.eigenvalues, "eigenvalues"),
                        (arrays.projector, "projector"),
                        (arrays.spectrum_matrix, "spectrum_matrix"),
                    )
                )
                built = Built.adopted(arrays.version, updated, self._target, *tensors)
                check_adopted(built, updated, self._target.sigma, target)
                return built

            try:
                swapped = self._swapped_in(adopted, built_here=False)
            except NotAdoptable:
                return False
            self._adoptions += swapped is not None
            return swapped is not None

    def _swapped_in(self, make: Callable[[], Built], *, built_here: bool = True) -> int | None:
        """Under the rebuild lock, ``self._later`` started: ``make()`` the built version
        outside the other locks, then swap it in with the commits since it kept pending on it
        (the shared end of :meth:`rebuild` and :meth:`adopt`). Returns its version, or None
        where a commit built a newer one meanwhile."""
        try:
            built = make()
            # The commits that arrived meanwhile are factored here, outside the locks; the
            # few that arrive during that are appended at the swap.
            early = self._later_factor(built)
        except BaseException:
            with self._commit_lock:
                self._later = None
            raise
        with self._commit_lock:
            later, self._later = self._later, None
            self._rebuilds += built_here
            newest = self._head
            if newest.built.version >= built.version:
                return None  # a commit built a newer version meanwhile
            assert later is not None
            if later.rows:
                factor = self._caught_up(early, later)
                successor = Head(
                    newest.version, built, later, newest.base_fd, newest.base_error, factor
                )
            else:
                successor = Head.at(built)
            with self._swap_lock:
                self._head = successor
                self._history.keep(successor, self._appended)
        return built.version

    def _later_factor(self, built: Built) -> tuple[Head, torch.Tensor]:
        """During a rebuild: the commits since the head it builds, as a head on ``built`` with
        their factorisation (its base FD not computed), and the rows they hold."""
        with self._commit_lock:
            assert self._later is not None
            later = self._later
            current = self._pool[later.positions]
        head = Head(built.version, built, later, built.base_fd, 0.0)
        if not later.rows or not self._holds(later.rows):
            return head, current
        start = Head(built.version, built, Changes.none(self.d, self._device), 0.0, 0.0)
        factored = factor_of(start, current[:0], later, current, None, self._settings)
        return replace(head, factor=None if factored is None else factored[0]), current

    def _caught_up(self, early: tuple[Head, torch.Tensor], later: Changes) -> PendingFactor | None:
        """Under the commit lock: ``early``'s factorisation extended by the commits since it,
        or started for them (None when it cannot be, and the next commit factors the pending
        rows anew)."""
        head, held = early
        if not self._holds(later.rows):
            return None
        # Without a factorisation (nothing was pending when it was made) one starts here:
        # rewards fold a head's rows through it, linearly instead of quadratically.
        factored = factor_of(head, held, later, self._pool[later.positions], None, self._settings)
        return None if factored is None else factored[0]

    def _rows_of_head(self) -> torch.Tensor:
        """During a rebuild: the pool rows of the head it builds (the current rows with the
        ones changed since put back)."""
        with self._commit_lock:
            rows = self._pool.clone()
            if self._later is not None:
                rows[self._later.positions] = self._later.originals
            return rows

    # ----------------------------------------------------------------- evaluation
    def fd(self, features: Any) -> float:
        """Fréchet distance of the Gaussian fitted to ``features`` (n >= 2 rows) to the target."""
        xs = as_float64(features, self._device, "features")
        check_features(xs, self.d, min_rows=2)
        mean, covariance = gaussian_of(xs)
        root = self._target.root
        cross = trace_sqrt_psd(root @ covariance @ root)
        trace = covariance.trace()
        target = self._target
        return float(frechet_from_terms(target.mean_term(mean), trace, target.trace, cross))

    # ----------------------------------------------------------------- state
    def _snapshot(self) -> tuple[Head, torch.Tensor, int]:
        """The head, a copy of its pool rows and the cursor, taken together."""
        with self._swap_lock:
            return self._head, self._pool.clone(), self._cursor

    @staticmethod
    def _sums_of(head: Head, pool: torch.Tensor) -> ShiftedSums:
        """The head's statistics: the built ones with the pending change applied, or from the
        rows when that would lose digits."""
        changes = head.changes
        if not changes.rows:
            return head.built.sums
        sums = head.built.sums.replaced(changes.originals, pool[changes.positions])
        return ShiftedSums.of_rows(pool) if sums.stale(STATISTICS_RTOL) else sums

    def statistics(self) -> PoolStatistics:
        """The head's sufficient statistics about their shift, float64 numpy copies."""
        head, pool, _ = self._snapshot()
        sums = self._sums_of(head, pool)
        return PoolStatistics(
            shift=sums.shift.cpu().numpy().copy(),
            total=sums.total.cpu().numpy().copy(),
            gram=sums.gram.cpu().numpy().copy(),
            n=sums.n,
        )

    def pool(self) -> np.ndarray:
        """A float64 copy of the pool rows, in storage order."""
        with self._swap_lock:
            rows: np.ndarray = self._pool.cpu().numpy().copy()
        return rows

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this engine at its head: target, pool, ring cursor,
        version, and the sufficient statistics about their shift (which spare an O(N d^2)
        recompute on load)."""
        head, pool, cursor = self._snapshot()
        sums = self._sums_of(head, pool)
        return {
            "target_mu": self._target.mean.cpu().numpy().copy(),
            "target_sigma": self._target.sigma.cpu().numpy().copy(),
            "pool": pool.cpu().numpy(),
            "cursor": cursor,
            "version": head.version,
            "shift": sums.shift.cpu().numpy().copy(),
            "sum": sums.total.cpu().numpy().copy(),
            "gram": sums.gram.cpu().numpy().copy(),
        }

    @classmethod
    def from_state_dict(
        cls,
        state: dict[str, Any],
        device: str | torch.device | None = None,
        quadrature: QuadratureSettings | None = None,
    ) -> RewardEngine:
        """Rebuild an engine from :meth:`state_dict` output. ``shift``/``sum``/``gram`` are
        optional; without a shift (raw sums, which lose digits far from the origin) the
        statistics are recomputed from the pool."""
        keys = ("shift", "sum", "gram")
        statistics = None
        if all(key in state for key in keys):
            statistics = (state["shift"], state["sum"], state["gram"])
        return cls(
            state["target_mu"],
            state["target_sigma"],
            state["pool"],
            device=device,
            version=int(state["version"]),
            quadrature=quadrature,
            cursor=int(state.get("cursor", 0)),
            statistics=statistics,
        )
