"""The refusal of a commit that would take the pool off the low-rank path.

Rewards are certified by quadrature only while ``M = A S A`` of the version served is not
numerically singular (``QuadratureSettings.min_relative_eigenvalue``); on a singular ``M`` every
group falls back to the exact path, O(d^3) a group. A pool of N <= d rows is singular by
nature and is served exactly; a commit that makes a regular pool singular (N rows of one value,
rows spanning fewer than d directions) would do that to every caller's rewards, so
:meth:`~.reward_engine.RewardEngine.check_commit` refuses it before anything changes.
"""

from __future__ import annotations

__all__ = ["DegeneratePool"]


class DegeneratePool(Exception):
    """A commit would leave the pool's ``M = A S A`` numerically singular where it was not:
    ``ratio`` is ``lambda_min / lambda_max`` it would have (NaN for a zero ``M``), ``limit``
    the smallest the low-rank path certifies. Nothing was changed."""

    def __init__(self, rows: int, ratio: float, limit: float) -> None:
        spectrum = "be zero" if ratio != ratio else f"have lambda_min / lambda_max = {ratio:.3g}"
        super().__init__(
            f"committing these {rows} rows would leave the pool numerically singular: A S A "
            f"would {spectrum}, where the low-rank path needs more than {limit:g}, and every "
            "reward would fall back to the exact path. The pool is unchanged; commit samples "
            "that keep its spread (not many copies of one row)"
        )
        self.rows = rows
        self.ratio = ratio
        self.limit = limit
