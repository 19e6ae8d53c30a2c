"""Which pool rows a group replaces.

``shared`` draws one row set for all groups of a request: their rewards then differ only through
the groups themselves (common random numbers), which is what group-normalised advantages compare.
``independent`` draws a fresh set per group. ``indices`` takes the caller's rows.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from .choices import MODES, SEED_LIMIT, Mode

__all__ = ["choose_rows"]


def choose_rows(
    mode: Mode, groups: int, group_size: int, pool_size: int, seed: int | None, indices: Any
) -> tuple[np.ndarray, int | None]:
    """Rows to replace, (groups, group_size) int64, and the seed used (drawn when ``None``;
    ``None`` for ``indices``). Draws come from numpy's PCG64 on the host, so a seed gives the
    same rows on every device and replica."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if group_size > pool_size:
        raise ValueError(
            f"groups of K={group_size} cannot replace rows of a pool of N={pool_size}: "
            "send groups of at most N samples or upload a larger pool"
        )
    if mode == "indices":
        if indices is None:
            raise ValueError("mode 'indices' needs indices: (K,) or (G, K) pool row numbers")
        return _check_indices(indices, groups, group_size, pool_size), None
    if indices is not None:
        raise ValueError(f"indices are only used with mode 'indices', not {mode!r}")
    if seed is None:
        seed = secrets.randbelow(SEED_LIMIT)
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**63); got {seed}")
    rng = np.random.default_rng(int(seed))
    draws = 1 if mode == "shared" else groups
    rows = np.stack([rng.choice(pool_size, size=group_size, replace=False) for _ in range(draws)])
    return np.broadcast_to(rows, (groups, group_size)).astype(np.int64), int(seed)


def _check_indices(indices: Any, groups: int, group_size: int, pool_size: int) -> np.ndarray:
    try:
        array = np.asarray(indices)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"indices must be integers: {exc}") from exc
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {array.dtype}")
    if array.shape == (group_size,):
        array = np.broadcast_to(array, (groups, group_size))
    if array.shape != (groups, group_size):
        raise ValueError(
            f"indices of shape {array.shape} do not fit {groups} groups of {group_size}: "
            f"send ({group_size},) for one row set or ({groups}, {group_size}) for one per group"
        )
    if array.size and (array.min() < 0 or array.max() >= pool_size):
        raise ValueError(f"indices must lie in [0, {pool_size}) (the pool's rows)")
    for row in array:
        if np.unique(row).size != group_size:
            raise ValueError("indices repeat a row within a group; each row can be replaced once")
    return array.astype(np.int64)
