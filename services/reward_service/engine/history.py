"""The recent versions an engine keeps, so that credits can be asked for at a version the pool
has since moved past (the ranks of one training step ask at the version the step began with,
while their own commits move the head)."""

from __future__ import annotations

from collections import OrderedDict

from .versions import Head

__all__ = ["HISTORY_BYTES", "HISTORY_VERSIONS", "VersionHistory", "VersionNotHeld"]

HISTORY_VERSIONS = 64
"""Recent versions whose per-sample credits can still be asked for after the pool moved on: the
ranks of one training step ask at the version the step began with (the service's rounds) while
their own commits move the head, so a few steps' worth of commits is enough."""

HISTORY_BYTES = 256 * 2**20
"""Memory the kept versions' built precomputes may hold beyond the newest two (three d x d
float64 matrices each: 96 MiB at d = 2048, where two are kept; at small d, where every commit
may be built, all of :data:`HISTORY_VERSIONS`)."""


class VersionNotHeld(LookupError):
    """The version asked for is neither the head nor a recent version the engine keeps."""


class VersionHistory:
    """Recent heads by version, oldest first, each with the count of rows appended before it.
    Not thread-safe: the engine guards it with its swap lock."""

    def __init__(self, d: int) -> None:
        self._heads: OrderedDict[int, tuple[Head, int]] = OrderedDict()
        # Built precomputes beyond the newest two that fit in HISTORY_BYTES (d x d matrices).
        self._most_built = max(2, HISTORY_BYTES // (3 * 8 * d * d))

    @property
    def oldest(self) -> int:
        return next(iter(self._heads))

    def get(self, version: int) -> tuple[Head, int] | None:
        """The head of ``version`` and the rows appended before it, or None."""
        return self._heads.get(version)

    def keep(self, head: Head, appended: int) -> None:
        """Remember ``head`` as its version's, dropping the oldest versions beyond
        :data:`HISTORY_VERSIONS`, and those on built versions beyond what
        :data:`HISTORY_BYTES` holds."""
        self._heads[head.version] = (head, appended)
        self._heads.move_to_end(head.version)
        while len(self._heads) > HISTORY_VERSIONS:
            self._heads.popitem(last=False)
        builts = {id(kept.built): kept.built.version for kept, _ in self._heads.values()}
        if len(builts) > self._most_built:
            oldest = sorted(builts.values())[-self._most_built]
            for version in [
                v for v, (kept, _) in self._heads.items() if kept.built.version < oldest
            ]:
                del self._heads[version]
