"""HTTP layer: routers per resource, dependencies, wire formats, error mapping."""

from __future__ import annotations

from fastapi import APIRouter

from .routes import health, references, rewards

__all__ = ["api_router"]

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(references.router)
api_router.include_router(rewards.router)
