"""When a low-rank result may stand in for the exact one, and the head versions certified from a
built precompute.

A result on the low-rank path comes with an estimated absolute error; it is used where that
estimate is within ``max(reward_rtol |value|, reward_atol max(1, FD_0))`` and recomputed exactly
otherwise (:func:`settle`). A commit's new head takes its base FD the same way, from the built
precompute and the pending rows' factorisation (:func:`certified_head`, :func:`certified_run`);
where it cannot be certified the engine builds the version. Pure functions of the versions and
rows they are given: the engine holds the state and the locks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .choices import Method
from .lowrank import QuadratureSettings, TraceSqrtChange
from .pending import PendingFactor
from .replacement import Replacement
from .versions import Built, Changes, Head, TargetTerms

__all__ = [
    "REGULARITY_MARGIN",
    "certified_fd",
    "certified_head",
    "certified_run",
    "factor_of",
    "fits",
    "holds",
    "projected",
    "settle",
    "shown_regular",
]

REGULARITY_MARGIN = 2.0
"""A certified head's ``M`` counts as regular by its certificate when the lower end of its
spectral interval is this many times ``min_relative_eigenvalue`` of the upper end: the build
that folds it in later computes eigenvalues within about ``d u lambda_max`` of the true ones
(``u`` the unit round-off), far inside that slack."""


def fits(settings: QuadratureSettings, d: int, rows: int) -> bool:
    """Whether an update replacing ``rows`` rows (rank ``2 rows + 1``) goes to the low-rank
    path: above ``max_rank_fraction * d`` an eigendecomposition is cheaper."""
    return 2 * rows + 1 <= settings.max_rank_fraction * d


def holds(settings: QuadratureSettings, d: int, rows: int) -> bool:
    """Whether ``rows`` pending rows stay on the low-rank path for commits (the head's
    factorisation grows linearly per commit; see ``max_pending_fraction``)."""
    fraction = max(settings.max_pending_fraction, settings.max_rank_fraction)
    return 2 * rows + 1 <= fraction * d


def settle(
    head: Head,
    count: int,
    settings: QuadratureSettings,
    lowrank: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None,
    exact: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[np.ndarray, np.ndarray, tuple[Method, ...]]:
    """Rewards of ``count`` groups or samples for ``head``, their error estimates (NaN for
    exact ones) and the path each took: ``lowrank()`` (rewards relative to the built version
    and their errors; None: skip it) certified against the tolerance, ``exact`` (rewards
    relative to the built version of the chosen indices) for the rest."""
    device = head.built.mean.device
    # Rewards relative to the built version, less the head's own change from it.
    offset = head.built.base_fd - head.base_fd
    errors = torch.full((count,), torch.nan, dtype=torch.float64, device=device)
    if lowrank is not None:
        rewards, errors = lowrank()
        rewards = rewards - offset
        errors = errors + head.base_error
        tolerance = torch.clamp(
            settings.reward_rtol * rewards.abs(),
            min=settings.reward_atol * max(1.0, abs(head.base_fd)),
        )
        certified = torch.isfinite(errors) & (errors <= tolerance)
    else:
        rewards = torch.zeros(count, dtype=torch.float64, device=device)
        certified = torch.zeros(count, dtype=torch.bool, device=device)
    fallback = torch.nonzero(~certified).flatten()
    if fallback.numel():
        rewards[fallback] = exact(fallback) - offset
        errors[fallback] = torch.nan
    used: tuple[Method, ...] = tuple(
        "lowrank" if flag else "exact" for flag in certified.cpu().tolist()
    )
    return rewards.cpu().numpy(), errors.cpu().numpy(), used


def certified_fd(
    built: Built,
    terms: Replacement,
    change: TraceSqrtChange,
    index: int,
    settings: QuadratureSettings,
) -> tuple[float, float] | None:
    """A version's base FD and its error estimate from the ``tr sqrt`` change at ``index``
    and the version's closed-form ``terms`` relative to ``built``; None where the estimate is
    over the tolerance (or NaN: not certified)."""
    reward = float(2.0 * change.change[index] - terms.mean_change[0] - terms.trace_change[0])
    error = 2.0 * float(change.error_estimate[index])
    base_fd = built.base_fd - reward
    tolerance = max(
        settings.reward_rtol * abs(reward),
        settings.reward_atol * max(1.0, abs(base_fd)),
    )
    if not error <= tolerance:  # NaN too
        return None
    return base_fd, error


def shown_regular(head: Head, settings: QuadratureSettings) -> bool:
    """Whether the spectral interval of a certified head shows its ``M`` regular."""
    if head.factor is None:
        return False
    lo, hi = head.factor.spectrum
    return lo > REGULARITY_MARGIN * settings.min_relative_eigenvalue * hi


def projected(built: Built, rows: torch.Tensor) -> torch.Tensor:
    """Rows (m, d) centred at the built mean, in ``M``'s eigenbasis: columns ``B x~`` (d, m)."""
    return built.projector @ (rows - built.mean).T


def certified_head(
    head: Head,
    held: torch.Tensor,
    changes: Changes,
    current: torch.Tensor,
    target: TargetTerms,
    settings: QuadratureSettings,
) -> Head | None:
    """The head after ``head`` (whose pending positions hold ``held``) whose ``changes`` hold
    ``current``, with its base FD by the low-rank path from ``head.built`` and the pending
    factorisation extended by the new positions; None when that cannot be certified."""
    built = head.built
    if not holds(settings, built.mean.shape[0], changes.rows):
        return None
    nothing = current[:0].unsqueeze(0)  # the head adds no rows beyond the pending ones
    terms = Replacement.of(built, changes.originals[None], current, nothing, target)
    if not bool(terms.trusted.all()):
        return None
    factored = factor_of(head, held, changes, current, terms.delta[0], settings)
    if factored is None:
        return None
    factor, change = factored
    assert change is not None
    certified = certified_fd(built, terms, change, 0, settings)
    if certified is None:
        return None
    base_fd, error = certified
    return Head(head.version + 1, built, changes, base_fd, error, factor)


def certified_run(
    head: Head,
    factor: PendingFactor,
    changes: Changes,
    current: torch.Tensor,
    ends: list[int],
    target: TargetTerms,
    settings: QuadratureSettings,
) -> tuple[PendingFactor, list[tuple[float, float]]] | None:
    """``factor`` (the head's pending rows') extended by the fresh positions of ``changes``,
    and the base FD with its error estimate of each version whose rows are the first
    ``pending + ends[j]`` of them, certified by the low-rank path from ``head.built``; None
    where one cannot be."""
    built, pending = head.built, head.changes.rows
    nothing = current[:0].unsqueeze(0)
    terms = [
        Replacement.of(
            built,
            changes.originals[None, : pending + end],
            current[: pending + end],
            nothing,
            target,
        )
        for end in ends
    ]
    if not all(bool(term.trusted.all()) for term in terms):
        return None
    fresh = slice(pending, None)
    originals, rows = changes.originals[fresh], current[fresh]
    columns = (
        built.projector
        @ torch.cat(
            [originals - built.mean, rows - built.mean, torch.stack([t.delta[0] for t in terms])]
        ).T
    )
    count = len(rows)
    removed, added = columns[:, :count], columns[:, count : 2 * count]
    weight = 1.0 / (built.n - 1)
    # Each commit's removals, then its additions: every prefix is a pool's scatter.
    starts = [0, *ends[:-1]]
    order = torch.cat(
        [
            torch.cat([removed[:, a:b], added[:, a:b]], dim=1)
            for a, b in zip(starts, ends, strict=True)
        ],
        dim=1,
    )
    weights = torch.cat(
        [
            torch.cat([order.new_full((b - a,), -weight), order.new_full((b - a,), weight)])
            for a, b in zip(starts, ends, strict=True)
        ]
    )
    factor, change = factor.extended_changes(
        order, weights, [2 * end for end in ends], columns[:, 2 * count :], -built.n * weight
    )
    if not factor.contains():
        return None
    certified = [certified_fd(built, term, change, j, settings) for j, term in enumerate(terms)]
    if any(version is None for version in certified):
        return None
    return factor, [version for version in certified if version is not None]


def factor_of(
    head: Head,
    held: torch.Tensor,
    changes: Changes,
    current: torch.Tensor,
    shift: torch.Tensor | None,
    settings: QuadratureSettings,
) -> tuple[PendingFactor, TraceSqrtChange | None] | None:
    """The factorisation of ``changes`` (rows ``current`` at their positions) relative to
    ``head.built`` and, given the mean ``shift`` (projected), the change of ``tr sqrt`` it
    makes. The head's factorisation (made with rows ``held`` at its positions) is extended by
    the positions ``changes`` adds after the head's when those positions still hold those rows
    (a commit that wraps around the ring onto a pending position changes one) and the spectrum
    stays in its interval; otherwise it is started anew. None where the built spectrum allows
    no certified quadrature."""
    built = head.built
    factor, first = head.factor, head.changes.rows
    if factor is not None and torch.equal(current[:first], held):
        result = _extended(built, factor, changes.originals[first:], current[first:], shift)
        if result[0].contains():
            return result
    spread = float(projected(built, current).square().sum()) / (built.n - 1)
    factor = PendingFactor.start(built.eigenvalues, spread, settings)
    if factor is None:
        return None
    return _extended(built, factor, changes.originals, current, shift)


def _extended(
    built: Built,
    factor: PendingFactor,
    originals: torch.Tensor,
    current: torch.Tensor,
    shift: torch.Tensor | None,
) -> tuple[PendingFactor, TraceSqrtChange | None]:
    """``factor`` with the positions that held ``originals`` (m, d) and hold ``current`` now
    appended, the removals first so that every prefix is a pool's scatter; given the mean
    ``shift`` (d,), the change of ``tr sqrt`` too. One product with the projector for all of
    them: it is read from memory once."""
    count = originals.shape[0]
    rows = [originals - built.mean, current - built.mean]
    if shift is not None:
        rows.append(shift.unsqueeze(0))
    columns = built.projector @ torch.cat(rows).T
    removals_and_additions = columns[:, : 2 * count]
    weight = 1.0 / (built.n - 1)
    weights = torch.cat([columns.new_full((count,), -weight), columns.new_full((count,), weight)])
    if shift is None:
        return factor.extended(removals_and_additions, weights), None
    means = columns[:, -1:]
    return factor.extended_changes(
        removals_and_additions, weights, [2 * count], means, -built.n * weight
    )
