"""Prometheus metrics (prefix ``distreward_``), one registry per app so tests stay isolated.

Labels come from bounded sets, whatever callers send: ``endpoint`` is the route template
(``/v1/references/{name}/rewards``), never the raw path, and ``method`` one the route serves;
requests the router refuses (unknown path: 404, a method the route does not serve: 405) are
counted as ``endpoint="unmatched", method="other"`` and not timed;
``reference`` is a reference name, which only admins can create, and a deleted reference's
series are removed with it.
"""

from __future__ import annotations

import contextlib
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .engine import Method

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "distreward_requests", "HTTP requests", ["endpoint", "method", "status"], registry=r
        )
        self.request_duration = Histogram(
            "distreward_request_duration_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("distreward_in_flight_requests", "requests being served", registry=r)
        self.samples_rewarded = Counter(
            "distreward_samples_rewarded", "samples scored", ["reference"], registry=r
        )
        self.groups_rewarded = Counter(
            "distreward_groups_rewarded", "groups scored", ["reference"], registry=r
        )
        self.reward_compute = Histogram(
            "distreward_reward_compute_seconds",
            "engine time per rewards request",
            ["reference", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commits = Counter(
            "distreward_commits", "commits appended (retries excluded)", ["reference"], registry=r
        )
        self.rebuilds = Counter(
            "distreward_rebuilds",
            "version precomputes built (one build covers every commit pending at its start)",
            ["reference"],
            registry=r,
        )
        self.pool_version = Gauge(
            "distreward_pool_version", "version this process holds", ["reference"], registry=r
        )
        self.base_fd = Gauge(
            "distreward_base_fd", "FD of the held pool to the target", ["reference"], registry=r
        )
        self.pool_size = Gauge("distreward_pool_size", "pool rows", ["reference"], registry=r)
        self.pool_freshness = Gauge(
            "distreward_pool_freshness",
            "share of pool rows committed within the freshness window (0 to 1)",
            ["reference"],
            registry=r,
        )
        self.store_errors = Counter(
            "distreward_store_errors", "store operations that failed", ["operation"], registry=r
        )
        self.store_up = Gauge("distreward_store_up", "1 when the store answered last", registry=r)
        self.unloadable = Gauge(
            "distreward_reference_unloadable",
            "1 while a stored reference cannot be loaded (isolated; see the log)",
            ["reference"],
            registry=r,
        )
        self._per_reference = (
            self.samples_rewarded, self.groups_rewarded, self.commits, self.rebuilds,
            self.pool_version, self.pool_freshness,
            self.base_fd, self.pool_size, self.unloadable,
        )

    def forget_reference(self, name: str) -> None:
        """Drop every series of a deleted reference."""
        for family in self._per_reference:
            _remove(family, (name,))
        for method in get_args(Method):
            _remove(self.reward_compute, (name, method))


def _remove(family: Counter | Gauge | Histogram, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # a series never set
        family.remove(*labels)
