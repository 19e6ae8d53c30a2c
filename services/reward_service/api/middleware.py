"""Request metrics as a plain ASGI middleware (no body buffering, works with streaming)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import ServiceMetrics

__all__ = ["MetricsMiddleware"]


class MetricsMiddleware:
    """Counts requests by route template, method and status, and times those a route served;
    every label from a bounded set (see :mod:`reward_service.metrics`)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            # Served: a route matched the path and serves the method. Anything else was
            # refused by the router (404, 405) and is counted as one "unmatched" kind, neither
            # its path nor its method a label, and not timed.
            route = scope.get("route")
            method = scope["method"]
            if method in (getattr(route, "methods", None) or ()):
                endpoint = getattr(route, "path", "unmatched")
                self.metrics.requests.labels(endpoint, method, str(status)).inc()
                elapsed = time.perf_counter() - start
                self.metrics.request_duration.labels(endpoint).observe(elapsed)
            else:
                self.metrics.requests.labels("unmatched", "other", str(status)).inc()
