"""Prometheus metrics (prefix ``distreward_``), one registry per app so tests stay isolated.

Labels come from bounded sets, whatever callers send: ``endpoint`` is the route template
(``/v1/references/{name}/rewards``), never the raw path, and ``method`` one the route serves;
requests the router refuses (unknown path: 404, a method the route does not serve: 405) are
counted as ``endpoint="unmatched", method="other"`` and not timed;
``reference`` is a reference name, which only admins can create, and a deleted reference's
series are removed with it; ``reason`` one of :data:`~reward_service.errors.RejectionReason`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .engine import Method
from .errors import RejectionReason

__all__ = ["ServiceMetrics"]

F = TypeVar("F", Counter, Gauge)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._per_reference: list[Counter | Gauge] = []
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
        self.reward_compute = Histogram(
            "distreward_reward_compute_seconds",
            "engine time per rewards request",
            ["reference", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rejections = Counter(
            "distreward_rejections",
            "requests refused by a limit or a share (413, 429), by reason",
            ["reason"],
            registry=r,
        )
        for reason in get_args(RejectionReason):  # every reason shows, at 0 until it happens
            self.rejections.labels(reason)
        self.store_errors = Counter(
            "distreward_store_errors", "store operations that failed", ["operation"], registry=r
        )
        self.store_up = Gauge("distreward_store_up", "1 when the store answered last", registry=r)
        # One series per reference each, all removed with the reference (forget_reference).
        counter, gauge = self._per_reference_family(Counter), self._per_reference_family(Gauge)
        self.samples_rewarded = counter("distreward_samples_rewarded", "samples scored")
        self.groups_rewarded = counter("distreward_groups_rewarded", "groups scored")
        self.commits = counter("distreward_commits", "commits appended (retries excluded)")
        self.rebuilds = counter(
            "distreward_rebuilds",
            "version precomputes built (one build covers every commit pending at its start)",
        )
        self.adoptions = counter(
            "distreward_adoptions",
            "version precomputes adopted from another process instead of built here",
        )
        self.pool_version = gauge("distreward_pool_version", "version this process holds")
        self.base_fd = gauge("distreward_base_fd", "FD of the held pool to the target")
        self.pool_size = gauge("distreward_pool_size", "pool rows")
        self.pool_freshness = gauge(
            "distreward_pool_freshness",
            "share of pool rows committed within the freshness window (0 to 1)",
        )
        self.pool_turnover = gauge(
            "distreward_pool_turnover_calls",
            "reward calls at the recent commit volume to renew the pool (+Inf: it does not)",
        )
        self.lag_rows = gauge(
            "distreward_served_lag_rows",
            "rows committed beyond the version the last rewards or credits answer used",
        )
        self.unloadable = gauge(
            "distreward_reference_unloadable",
            "1 while a stored reference cannot be loaded (isolated; see the log)",
        )

    def _per_reference_family(self, kind: type[F]) -> Callable[[str, str], F]:
        """A maker of ``kind`` families labelled by ``reference`` in this registry, each one
        remembered so that :meth:`forget_reference` removes its series."""

        def make(name: str, documentation: str) -> F:
            family = kind(name, documentation, ["reference"], registry=self.registry)
            self._per_reference.append(family)
            return family

        return make

    def forget_reference(self, name: str) -> None:
        """Drop every series of a deleted reference."""
        for family in self._per_reference:
            _remove(family, (name,))
        for method in get_args(Method):
            _remove(self.reward_compute, (name, method))


def _remove(family: Counter | Gauge | Histogram, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # a series never set
        family.remove(*labels)
