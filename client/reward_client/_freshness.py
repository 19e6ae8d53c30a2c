"""The stalled-pool watch: one warning per reference when reward answers keep saying that the
pool lags the policy.

A distribution-wise reward only points the right way while the pool is the policy's own
distribution; a pool that lags the policy turns it into a fixed per-sample score, and
training hacks it. Every rewards and credits answer says how fast the pool renews
(`PoolFreshness`); a client watches those answers per reference and logs once when they stay
too slow. Trainers call from thread pools, so the watch holds its own lock.
"""

from __future__ import annotations

import logging
import math
import threading

from ._config import ClientConfig
from ._types import PoolFreshness

__all__ = ["FreshnessWatch"]

logger = logging.getLogger("reward_client")


class FreshnessWatch:
    """Per reference: answers in a row whose pool renews too slowly, and whether that was
    reported."""

    def __init__(self) -> None:
        self._stalled: dict[str, int] = {}
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def observe(self, name: str, freshness: PoolFreshness, config: ClientConfig) -> None:
        """Count an answer about reference ``name``; warn once per reference when
        ``config.stalled_calls`` answers in a row say that the pool takes more than
        ``config.turnover_steps`` steps to renew at the recent commit volume. Judged on the
        turnover, which a young run knows from its first calls."""
        if freshness.rows_per_call is None:  # no volume known yet
            return
        ranks = config.sharing_ranks
        turnover = freshness.turnover_calls
        steps = math.inf if turnover is None else turnover / ranks
        with self._lock:
            if steps <= config.turnover_steps:
                self._stalled[name] = 0
                return
            calls = self._stalled[name] = self._stalled.get(name, 0) + 1
            if calls < config.stalled_calls or name in self._reported:
                return
            self._reported.add(name)
        logger.warning(
            "reference %s: at the recent commit volume (%.1f rows per reward call, %d rank(s)) "
            "the pool renews in %s; per-sample credits lose most of their gain beyond "
            "about %.0f. A pool that lags the policy turns distribution-wise rewards into a "
            "fixed per-sample score that training hacks (FID rises, modes collapse): commit "
            "more of what you reward (commit_fraction on credits, or RewardClient.commit), or "
            "use a smaller pool (about rows committed per step x 30).",
            name,
            freshness.rows_per_call,
            ranks,
            "no number of steps (nothing committed)" if turnover is None else f"{steps:.0f} steps",
            config.turnover_steps,
        )
