"""The work a rewards or credits request will cost the engine, estimated from its shape before
its body is read, and the bound on it (``DISTREWARD_MAX_REQUEST_GFLOP``, 413 beyond).

Floating-point operations per group of K rows at width d, by the path the engine takes
(``engine/replacement.py``):

* exact: the group's rows projected and their Gram matrix, ``4 K d^2``, and one ``eigvalsh`` of
  a d x d matrix, ``(4/3) d^3``;
* low-rank (``method=lowrank`` where the update rank ``2K + 1`` is at most
  ``max_rank_fraction * d``, else exact): the projection, ``2 K d^2``, and per quadrature node
  products of d x r x r with ``r = 2K + 2``, ``2 d r^2``, at ``_NOMINAL_NODES`` nodes (the count
  well-conditioned pools need; groups the quadrature cannot certify fall back to exact, which
  no estimate made before the data is seen can know).

A credits request of B samples is B groups of one. The pool size N does not enter: a group's
update is independent of it. Measured on a 2-core CPU, the exact path at d = 2048 ran at about
6.5 GFLOP/s (250 groups of 64, 3,100 GFLOP: 8 minutes); a GPU runs it 50 to 100 times faster.
The default bound, 500 GFLOP, admits 150 groups of 32 on the low-rank path (210 GFLOP) and up to
40 groups on the exact path at d = 2048.
"""

from __future__ import annotations

from .engine import QuadratureSettings
from .errors import PayloadTooLarge

__all__ = ["check_cost", "request_gflop"]

_NOMINAL_NODES = 64
_RANK_FRACTION = QuadratureSettings().max_rank_fraction  # the engine's own default


def _group_flop(size: int, d: int, method: str) -> float:
    if method == "lowrank" and 2 * size + 1 <= _RANK_FRACTION * d:
        return 2.0 * size * d * d + _NOMINAL_NODES * 2.0 * d * (2 * size + 2) ** 2
    return 4.0 * size * d * d + 4.0 / 3.0 * d**3


def request_gflop(shape: tuple[int, ...], method: str) -> float:
    """Estimated GFLOP of a request of ``shape``: (G, K, d) groups or (B, d) samples. Any
    method but ``lowrank`` is costed as exact (an unknown one is refused later, with 422)."""
    groups, size, d = shape if len(shape) == 3 else (shape[0], 1, shape[-1])
    return groups * _group_flop(size, d, method) / 1e9


def check_cost(what: str, shape: tuple[int, ...], method: str, limit_gflop: float) -> None:
    """413 naming the limit and the way out when the estimate exceeds ``limit_gflop``."""
    gflop = request_gflop(shape, method)
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
    if method != "lowrank":
        advice += ", or use method=lowrank"
    raise PayloadTooLarge(
        f"{what}: shape {shape} with method={method} is estimated at {gflop:,.0f} GFLOP of "
        f"engine work, over the limit of {limit_gflop:,.0f} (DISTREWARD_MAX_REQUEST_GFLOP); "
        f"{advice}",
        reason="cost",
    )
