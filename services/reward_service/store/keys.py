"""Every Redis key the service uses, built in one place.

A reference's keys share the hash tag ``{name}`` so that a Lua script touching several of them
stays on one slot under Redis Cluster. Keys that depend on a reference's life carry its
*incarnation* (or a pool generation), so a deleted-and-recreated reference never meets leftovers
(idempotency keys expire on their own; nothing else is left behind by ``delete``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True)
class Keys:
    prefix: str = "distreward"

    def names(self) -> str:
        """SET of reference names."""
        return f"{self.prefix}:references"

    def _ref(self, name: str) -> str:
        return f"{self.prefix}:ref:{{{name}}}"

    def meta(self, name: str) -> str:
        """HASH: d, n, version, incarnation, times, staged_rows, feature_space, base_* (see
        redis.py)."""
        return f"{self._ref(name)}:meta"

    def target(self, name: str) -> str:
        """HASH: mu, sigma as .npy bytes."""
        return f"{self._ref(name)}:target"

    def log(self, name: str) -> str:
        """STREAM: one entry per version change (kind, version[, features])."""
        return f"{self._ref(name)}:log"

    def staging(self, name: str, incarnation: str) -> str:
        """LIST of .npy chunks of a pool upload in progress."""
        return f"{self._ref(name)}:staging:{incarnation}"

    def pool(self, name: str, generation: str) -> str:
        """LIST of .npy chunks: the base pool of one generation."""
        return f"{self._ref(name)}:pool:{generation}"

    def statistics(self, name: str, generation: str) -> str:
        """HASH: total, gram (.npy), n: sufficient statistics of a snapshot generation."""
        return f"{self._ref(name)}:stats:{generation}"

    def build(self, name: str, incarnation: str) -> str:
        """HASH: the newest version precompute a process shared (version, base_fd, arrays)."""
        return f"{self._ref(name)}:build:{incarnation}"

    def build_lease(self, name: str, incarnation: str) -> str:
        """STRING: the process building a precompute now (expires: a builder that dies frees
        it)."""
        return f"{self._ref(name)}:build-lease:{incarnation}"

    def round(self, name: str, incarnation: str, round_id: str) -> str:
        """STRING: the version a round of requests is answered at (expires)."""
        return f"{self._ref(name)}:round:{incarnation}:{round_id}"

    def idempotency(self, name: str, incarnation: str, caller: str, key: str) -> str:
        """STRING: the version a caller's commit key was answered with, and the digest of what
        it committed (expires). ``caller`` (a hex digest of the token, "" without
        authentication) scopes the key: another caller's same key is another key."""
        return f"{self._ref(name)}:idem:{incarnation}:{caller}:{key}"
