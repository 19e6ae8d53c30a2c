"""How fresh a reference's pool is: the share of its rows that recent commits replaced, and how
many reward calls it takes to renew it.

A distribution-wise reward only points the right way while the pool is the policy's own
distribution; a pool that stops moving turns it into a fixed per-sample score that a trainer
hacks like any other (DESIGN section 8: 1 row committed a step out of 256 rewarded took the
digits demo from FID 90 to 841). So every answer says how much of the pool is recent:

    share = min(N, rows committed in the last ``versions`` versions and ``seconds`` seconds) / N

Commits replace the oldest rows (ring order), so until the ring wraps these are distinct rows.
Times are when this process applied each commit (a replica that replays a backlog counts it as
recent, once); versions are the store's, the same on every replica.

What decides whether the reward keeps up is the *turnover*: how many reward calls, at the
recent commit volume, renew the whole pool (DESIGN section 9). Per-sample credits lost most of
their gain once that took more than about 60 trainer steps. A young run knows its volume from
its first call, so turnover needs no full window:

    rows_per_call = rows committed through this process / reward calls it served
    turnover_calls = N / rows_per_call

over the last ``turnover_calls`` reward calls and ``seconds`` seconds. Behind a load balancer
each process serves a share of the calls and of the commits, so the ratio estimates the
cluster's. A trainer of R ranks makes R calls a step: it renews the pool in ``turnover_calls /
R`` steps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "FRESHNESS_SECONDS",
    "FRESHNESS_VERSIONS",
    "TURNOVER_CALLS",
    "Freshness",
    "FreshnessTracker",
]

FRESHNESS_VERSIONS = 100
"""Default window in versions: a trainer committing once a step sees the last 100 steps."""
FRESHNESS_SECONDS = 600.0
"""Default window in seconds: commits older than ten minutes no longer count as recent."""
TURNOVER_CALLS = 256
"""Default window of the commit volume in reward calls: a few steps of a large DDP job."""


@dataclass(frozen=True)
class Freshness:
    """``share`` of pool rows replaced within the window (0 to 1), the window itself, and the
    seconds since the last commit this process applied (None: none since it loaded the pool);
    ``rows_per_call``: rows committed per reward call recently (None: no reward call in the
    window), and ``turnover_calls``: reward calls at that volume to renew the pool (None: no
    call, or no commit, so the pool does not renew)."""

    share: float
    rows: int
    window_versions: int
    window_seconds: float
    seconds_since_commit: float | None
    rows_per_call: float | None
    turnover_calls: float | None


class FreshnessTracker:
    """Commits applied to one reference, kept as long as the window can count them."""

    def __init__(
        self,
        versions: int = FRESHNESS_VERSIONS,
        seconds: float = FRESHNESS_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._versions = versions
        self._seconds = seconds
        self._clock = clock
        self._commits: deque[tuple[int, float, int]] = deque()  # (version, applied at, rows)
        self._last: float | None = None
        # (at, reward calls, rows committed) as this process served them, newest last.
        self._volume: deque[tuple[float, int, int]] = deque()
        self._calls = 0

    def reset(self) -> None:
        """A new pool: nothing in it was committed."""
        self._commits.clear()
        self._last = None
        self._volume.clear()
        self._calls = 0

    def record_call(self) -> None:
        """This process served a reward call (rewards or credits)."""
        self._volume.append((self._clock(), 1, 0))
        self._calls += 1
        while self._calls > TURNOVER_CALLS:
            _, calls, _ = self._volume.popleft()
            self._calls -= calls

    def record_committed(self, rows: int) -> None:
        """This process acknowledged a commit of ``rows`` new rows (not a replay)."""
        self._volume.append((self._clock(), 0, rows))

    def record(self, version: int, rows: int) -> None:
        """A commit of ``rows`` rows made ``version``."""
        now = self._clock()
        self._commits.append((version, now, rows))
        self._last = now
        self._prune(version, now)

    def _prune(self, version: int, now: float) -> None:
        while self._commits and (
            self._commits[0][0] <= version - self._versions
            or self._commits[0][1] < now - self._seconds
        ):
            self._commits.popleft()

    def at(self, version: int, n: int) -> Freshness:
        """Freshness of the pool of ``n`` rows at ``version``."""
        now = self._clock()
        self._prune(version, now)
        rows = sum(count for _, _, count in self._commits)
        while self._volume and self._volume[0][0] < now - self._seconds:
            _, calls, _ = self._volume.popleft()
            self._calls -= calls
        committed = sum(count for _, _, count in self._volume)
        rows_per_call = committed / self._calls if self._calls else None
        return Freshness(
            share=min(rows, n) / n if n else 0.0,
            rows=rows,
            window_versions=self._versions,
            window_seconds=self._seconds,
            seconds_since_commit=None if self._last is None else now - self._last,
            rows_per_call=rows_per_call,
            turnover_calls=n / rows_per_call if rows_per_call and n else None,
        )
