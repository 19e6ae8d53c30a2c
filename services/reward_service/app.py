"""The application factory: ``create_app(settings)`` builds an app with its own store, metrics and
references, so tests (and several apps in one process) never share state."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .api import api_router
from .api.docs import install_docs
from .api.errors import install_error_handlers
from .api.middleware import MetricsMiddleware
from .api.openapi import install_openapi
from .limits import Limits
from .metrics import ServiceMetrics
from .service import ReferenceService
from .settings import Settings, get_settings
from .store import Store, open_store

__all__ = ["create_app"]

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Distribution-wise rewards: the reward of a group of samples is how much replacing pool "
    "rows by the group moves the pool's Fréchet distance to the target statistics. Bodies are "
    "JSON or binary `.npy` (parameters in the query string); see docs/API.md."
)


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """An app for ``settings`` (default: the environment); ``store`` overrides the one the
    settings name (tests pass a prepared store)."""
    settings = settings if settings is not None else get_settings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backing = store or open_store(
            settings.redis_url,
            settings.redis_timeout_seconds,
            sentinels=settings.redis_sentinels,
            master_name=settings.redis_master_name,
            password=settings.redis_password,
            sentinel_password=settings.redis_sentinel_password,
            min_replicas=settings.min_replicas,
            replica_wait_seconds=settings.redis_replica_wait_seconds,
        )
        service = ReferenceService(backing, settings, metrics)
        app.state.service = service
        if not settings.auth_enabled:
            log.warning("no tokens configured (development): authentication is OFF")
        await service.start()
        log.info("serving with the %s store", backing.kind)
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(
        title="distreward reward service",
        version="1",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(api_router)
    install_docs(app)
    install_openapi(app, Limits(settings))
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
