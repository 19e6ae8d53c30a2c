"""One router per resource; assembled in :mod:`reward_service.api`."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["references_router"]


def references_router(tag: str) -> APIRouter:
    """A router for routes under ``/v1/references``; each route documents the error answers
    it can give (:func:`~reward_service.api.openapi.errors`)."""
    return APIRouter(prefix="/v1/references", tags=[tag])
