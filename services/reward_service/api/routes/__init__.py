"""One router per resource; assembled in :mod:`reward_service.api`."""

from __future__ import annotations

from fastapi import APIRouter

from ..openapi import ERROR_RESPONSES

__all__ = ["references_router"]


def references_router(tag: str) -> APIRouter:
    """A router for routes under ``/v1/references``, every route documenting the error
    answers (:data:`~reward_service.api.openapi.ERROR_RESPONSES`)."""
    return APIRouter(prefix="/v1/references", tags=[tag], responses=ERROR_RESPONSES)
