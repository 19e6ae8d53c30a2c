"""Liveness, readiness and Prometheus metrics (no auth: for probes and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ...errors import Unavailable
from ..deps import MetricsDep, ServiceDep
from ..schemas import Health, Readiness

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(service: ServiceDep) -> Readiness | JSONResponse:
    """The store answers and the stored references are known; 503 otherwise. References this
    process cannot load are listed (``unloadable``): the others are served meanwhile."""
    kind = service.store_kind
    unloadable = service.references.unloadable
    try:
        count = await service.ready()
    except Unavailable:
        body = Readiness(status="unavailable", store=kind, references=0, unloadable=unloadable)
        return JSONResponse(body.model_dump(), status_code=503)
    return Readiness(status="ready", store=kind, references=count, unloadable=unloadable)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
