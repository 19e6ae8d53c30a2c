"""The work a rewards or credits request will cost the engine, estimated from its shape, and the
bound on it (``DISTREWARD_MAX_REQUEST_GFLOP``, 413 beyond).

Floating-point operations per group of K rows at width d, by the path the engine takes
(``engine/replacement.py``):

* exact: the group's rows projected and their Gram matrix, ``4 K d^2``, and one ``eigvalsh`` of
  a d x d matrix, ``(4/3) d^3``;
* low-rank (``method=lowrank`` where the update rank ``2K + 1`` is at most
  ``max_rank_fraction * d`` and the pool served is not numerically singular, else exact): the
  projection, ``2 K d^2``, and per quadrature node products of d x r x r with ``r = 2K + 2``,
  ``2 d r^2``, at ``_NOMINAL_NODES`` nodes (the count well-conditioned pools need).

A credits request of B samples is B groups of one. The pool size N does not enter: a group's
update is independent of it. The bound is work, not time: what a second of engine time buys
differs between hosts by orders of magnitude (a few CPU cores against a GPU), and a bound in
operations refuses the same requests on every host; the operator sizes it to the seconds one
request may hold the compute slots on theirs. The default bound, 500 GFLOP, admits 150 groups of
32 on the low-rank path (210 GFLOP) and up to 40 groups on the exact path at d = 2048.

The bound is checked in two steps, each with what it knows of the path: from the body's shape
before it is read (``api/array_body.py``), with the path of the pool this process holds (the
low-rank path where it holds none), and by the service with the pool it serves
(``lowrank_ready``: a pool of N <= d rows, or of rows spanning fewer than d directions, is
served exactly, and priced so). Groups the quadrature cannot certify fall back to exact,
which no estimate made before the data is seen can know: :func:`turns_taken` counts that work
against the caller's share of the compute slots afterwards (``admission.ComputeSlots``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .engine import QuadratureSettings
from .errors import PayloadTooLarge

__all__ = ["check_cost", "request_gflop", "turns_taken"]

_NOMINAL_NODES = 64
_RANK_FRACTION = QuadratureSettings().max_rank_fraction  # the engine's own default


def _dimensions(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(G, K, d) of a request of ``shape``: (G, K, d) groups or (B, d) samples."""
    groups, size, d = shape if len(shape) == 3 else (shape[0], 1, shape[-1])
    return groups, size, d


def _lowrank(size: int, d: int, method: str, lowrank_ready: bool) -> bool:
    """Whether groups of ``size`` rows go to the low-rank path."""
    return method == "lowrank" and lowrank_ready and 2 * size + 1 <= _RANK_FRACTION * d


def _group_flop(size: int, d: int, lowrank: bool) -> float:
    if lowrank:
        return 2.0 * size * d * d + _NOMINAL_NODES * 2.0 * d * (2 * size + 2) ** 2
    return 4.0 * size * d * d + 4.0 / 3.0 * d**3


def request_gflop(shape: tuple[int, ...], method: str, lowrank_ready: bool = True) -> float:
    """Estimated GFLOP of a request of ``shape``: (G, K, d) groups or (B, d) samples. Any
    method but ``lowrank`` is costed as exact (an unknown one is refused later, with 422), and
    so is every method where the pool served is numerically singular (``lowrank_ready``
    false)."""
    groups, size, d = _dimensions(shape)
    return groups * _group_flop(size, d, _lowrank(size, d, method, lowrank_ready)) / 1e9


def turns_taken(
    shape: tuple[int, ...], method: str, methods_used: Sequence[str], lowrank_ready: bool
) -> float:
    """Turns of the caller's compute share an engine call took: one, plus the work of the
    groups priced on the low-rank path that fell back to exact, in units of the call's
    estimate: at d = 2048, 9.5 for groups of 32 that all fell back, 900 for credits."""
    groups, size, d = _dimensions(shape)
    if not _lowrank(size, d, method, lowrank_ready):
        return 1.0
    fallbacks = sum(1 for used in methods_used if used == "exact")
    return 1.0 + fallbacks * _group_flop(size, d, False) / (groups * _group_flop(size, d, True))


def check_cost(
    what: str,
    shape: tuple[int, ...],
    method: str,
    limit_gflop: float,
    lowrank_ready: bool = True,
) -> None:
    """413 naming the limit and the way out when the estimate exceeds ``limit_gflop``; where
    the pool served cannot take the low-rank path (``lowrank_ready`` false) the request is
    priced as exact and the answer says why."""
    gflop = request_gflop(shape, method, lowrank_ready)
    if gflop <= limit_gflop:
        return
    groups = shape[0]
    per_group = gflop / groups
    fitting = int(limit_gflop // per_group)
    unit = "groups" if len(shape) == 3 else "samples"
    advice = (
        f"send at most {fitting} {unit} per request"
        if fitting
        else f"one of these {unit} alone exceeds it; send smaller ones"
    )
    if not lowrank_ready:
        advice = (
            "this pool runs every method on the exact path (its spectrum, A S A, is "
            "numerically singular: N <= d, or rows spanning fewer than d directions, which the "
            f"low-rank quadrature cannot certify); {advice}"
        )
    elif method != "lowrank":
        advice += ", or use method=lowrank"
    raise PayloadTooLarge(
        f"{what}: shape {shape} with method={method} is estimated at {gflop:,.0f} GFLOP of "
        f"engine work, over the limit of {limit_gflop:,.0f} (DISTREWARD_MAX_REQUEST_GFLOP); "
        f"{advice}",
        reason="cost",
    )
