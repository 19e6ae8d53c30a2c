"""The consistency check run after load and fault runs: the state in Redis, replayed the way a
fresh replica loads it, against a from-scratch recompute from the stored pool rows.

Checked: the sufficient statistics (row sum and Gram matrix about their shift) equal the
recompute from the pool (the sum relative to n standard deviations, as it is round-off where the
shift is the mean), and the base FD equals the FD of a Gaussian fitted to the pool from
scratch — both to 1e-9 relative.
The replay applies every logged commit incrementally, so a lost, doubled or torn commit shows up
as a mismatch with the rows themselves (and in the version)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reward_service.engine import frechet_distance, gaussian_of
from reward_service.replication.replica import Replica
from reward_service.store.redis import RedisStore

__all__ = ["StoredState", "read_stored_state"]

TOLERANCE = 1e-9


@dataclass(frozen=True)
class StoredState:
    version: int
    pool: np.ndarray  # (N, d) float64, storage order
    base_fd: float  # as the replayed statistics give it
    recomputed_fd: float  # from the pool rows, from scratch
    statistics_error: float  # max relative error of sum x and sum x x^T against the rows

    @property
    def fd_error(self) -> float:
        return abs(self.base_fd - self.recomputed_fd) / max(abs(self.recomputed_fd), 1e-300)

    @property
    def consistent(self) -> bool:
        return self.statistics_error <= TOLERANCE and self.fd_error <= TOLERANCE

    def summary(self) -> dict[str, float | int | bool]:
        return {
            "version": self.version,
            "base_fd": self.base_fd,
            "recomputed_fd": self.recomputed_fd,
            "fd_relative_error": self.fd_error,
            "statistics_relative_error": self.statistics_error,
            "consistent": self.consistent,
        }


def _relative(value: np.ndarray, reference: np.ndarray, scale: float = 0.0) -> float:
    """The largest entry of ``value - reference`` relative to the largest of ``reference``, or
    to ``scale`` where that is larger."""
    return float(
        np.abs(value - reference).max() / max(float(np.abs(reference).max()), scale, 1e-300)
    )


async def read_stored_state(redis_url: str, name: str) -> StoredState:
    """Load ``name`` from Redis as a new replica would (snapshot + log) and recompute."""
    store = RedisStore.from_url(redis_url)
    try:
        state = await Replica(name, store, "cpu").sync()
        target = await store.read_target(name)
    finally:
        await store.close()
    if state.engine is None:
        raise ValueError(f"reference {name!r} has no pool")
    statistics = state.engine.statistics()
    pool = state.engine.pool()
    centred = pool - statistics.shift
    gram = centred.T @ centred
    mu, sigma = gaussian_of(torch.from_numpy(pool))
    return StoredState(
        version=state.version,
        pool=pool,
        base_fd=float(state.engine.base_fd),
        recomputed_fd=float(frechet_distance(mu, sigma, target.mu, target.sigma)),
        statistics_error=max(
            # About a shift at the pool's mean the sum is round-off on both sides: it is
            # measured against its own scale, n standard deviations (sqrt(n gram_ii)).
            _relative(
                statistics.total, centred.sum(0), float(np.sqrt(len(pool) * gram.diagonal().max()))
            ),
            _relative(statistics.gram, gram),
        ),
    )
