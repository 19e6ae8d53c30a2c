"""OpenAPI request-body documentation for routes that read JSON or binary arrays themselves."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..schemas import ErrorResponse
from .wire import JSON, NPY, NPZ

__all__ = ["ERROR_RESPONSES", "array_body"]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}


def array_body(model: type[BaseModel], shape: str, *, npz: str | None = None) -> dict[str, Any]:
    """``openapi_extra`` for a body sent as JSON (``model``) or as ``.npy`` of ``shape``."""
    content: dict[str, Any] = {
        JSON: {"schema": model.model_json_schema()},
        NPY: {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": f".npy array {shape}, float16/32/64; parameters in the query",
            }
        },
    }
    if npz is not None:
        content[NPZ] = {"schema": {"type": "string", "format": "binary", "description": npz}}
    return {"requestBody": {"required": True, "content": content}}
