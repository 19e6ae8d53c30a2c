"""Prometheus metrics (prefix ``distreward_``), one registry per app so tests stay isolated.

Labels are bounded: ``endpoint`` is the route template (``/v1/references/{name}/rewards``), never
the raw path; ``reference`` is a reference name, which only admins can create.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.pool_version = Gauge(
            "distreward_pool_version", "version this process holds", ["reference"], registry=r
        )
        self.base_fd = Gauge(
            "distreward_base_fd", "FD of the held pool to the target", ["reference"], registry=r
        )
        self.pool_size = Gauge("distreward_pool_size", "pool rows", ["reference"], registry=r)
        self.store_errors = Counter(
            "distreward_store_errors", "store operations that failed", ["operation"], registry=r
        )
        self.store_up = Gauge("distreward_store_up", "1 when the store answered last", registry=r)

    def forget_reference(self, name: str) -> None:
        """Drop the per-reference series of a deleted reference."""
        for family in (self.pool_version, self.base_fd, self.pool_size):
            try:
                family.remove(name)
            except KeyError:
                continue
