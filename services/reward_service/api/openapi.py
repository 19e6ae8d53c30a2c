"""The OpenAPI document as the contract: every request body with the shapes, sizes and value range
the service enforces (from :class:`~reward_service.limits.Limits`, so the document and the checks
cannot drift apart), the error answers each route can give, and the headers they carry.

Array bodies come as JSON or as binary ``.npy`` / ``.npz``. A binary body is documented as what it
is on the wire, ``type: string, format: binary`` (so that generated clients send bytes), with the
array it must hold as its ``contentSchema`` (JSON Schema's description of decoded content).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..feature_spaces import FEATURE_SPACE_MAX_LENGTH, FEATURE_SPACE_PATTERN
from ..limits import ArraySpec, Limits
from .array_body import ArrayBody
from .body_reader import JSON, NPY, NPZ
from .schemas import ErrorResponse

__all__ = [
    "BodyDoc",
    "array_doc",
    "array_schema",
    "documented_body",
    "errors",
    "install_openapi",
    "target_doc",
]

BodyDoc = Callable[[Limits], dict[str, Any]]
"""An operation's ``requestBody`` object for the limits of one service."""

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_ERRORS: dict[int, tuple[str, dict[str, Any] | None]] = {
    400: ("values that cannot be used (wrong d, ragged or empty arrays, NaN, out of range)", None),
    401: (
        "missing or unknown token",
        {
            "WWW-Authenticate": {
                "description": "the scheme to use",
                "required": True,
                "schema": {"type": "string", "const": "Bearer"},
            }
        },
    ),
    403: ("this route needs an admin token", None),
    404: ("unknown reference", None),
    408: ("the body stopped arriving (DISTREWARD_BODY_IDLE_TIMEOUT_SECONDS); send it again", None),
    409: ("the reference's state does not allow it (no pool yet, pinned version moved, ...)", None),
    413: ("body or batch over the configured limits", None),
    415: ("a Content-Type this route does not read", None),
    422: ("malformed parameters or a JSON body that does not match its schema", None),
    429: ("too many requests from this token: retry after Retry-After", _RETRY_AFTER),
    503: ("the store cannot be reached: retry after Retry-After", _RETRY_AFTER),
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of error answers ``codes``: JSON ``{"detail": ...}`` and the headers
    each status carries."""
    answers: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description, headers = _ERRORS[code]
        answer: dict[str, Any] = {"model": ErrorResponse, "description": description}
        if headers is not None:
            answer["headers"] = headers
        answers[code] = answer
    return answers


def array_schema(spec: ArraySpec, bound: float) -> dict[str, Any]:
    """JSON Schema of an array of ``spec``: nested lists, no axis empty (the first holding at
    least ``spec.min_rows``), the leading axes within ``spec.maxima``, values within
    ``±bound``. One row width across the array (the reference's ``d``) is stated in words:
    JSON Schema cannot say it."""
    schema: dict[str, Any] = {"type": "number", "minimum": -bound, "maximum": bound}
    for axis in reversed(range(spec.ndim)):
        schema = {"type": "array", "items": schema, "minItems": spec.min_rows if axis == 0 else 1}
        maximum = spec.maxima[axis] if axis < len(spec.maxima) else None
        if maximum is not None:
            schema["maxItems"] = maximum
    return schema


def _binary(description: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": {
            "type": "string",
            "format": "binary",
            "description": description,
            "contentSchema": content,
        }
    }


def array_doc(body: ArrayBody[Any]) -> BodyDoc:
    """The body an :class:`~reward_service.api.array_body.ArrayBody` reads: JSON of its model (the
    array under its field, every parameter a member: a query parameter beside it is a 400) or
    ``.npy`` of the same array, its parameters then in the query string (one the route does
    not take is a 400)."""

    def doc(limits: Limits) -> dict[str, Any]:
        spec = body.spec_of(limits)
        array = array_schema(spec, limits.max_abs)
        schema = body.model.model_json_schema()
        schema["properties"][body.field] = {**schema["properties"][body.field], **array}
        described = schema.get("description", "").strip()
        schema["description"] = (
            (f"{described} " if described else "")
            + "Every parameter is a member of this body: the query string stays empty (a query "
            "parameter beside a JSON body is a 400 naming it)."
        )
        npy = _binary(
            f".npy (numpy.save) of {spec.what}, little-endian float16/32/64; every row of the "
            "reference's width d; parameters in the query string (one this route does not take "
            "is a 400 naming it)",
            array,
        )
        return {"required": True, "content": {JSON: {"schema": schema}, NPY: npy}}

    return doc


def target_doc(limits: Limits) -> dict[str, Any]:
    """Target statistics: ``mu`` and ``sigma`` (JSON or ``.npz``), or features to fit."""
    mu = array_schema(limits.mu, limits.max_abs)
    sigma = array_schema(limits.sigma, limits.max_abs**2)
    features = array_schema(limits.target_features, limits.max_abs)
    null = {"type": "null"}
    schema = {
        "type": "object",
        "description": 'either "mu" (d,) and "sigma" (d, d), a covariance matrix (symmetric, '
        'positive semi-definite), or "features" (n, d) to fit them from',
        "properties": {"mu": mu, "sigma": sigma, "features": features},
        "additionalProperties": False,
        "oneOf": [
            {"required": ["mu", "sigma"], "properties": {"features": null}},
            {"required": ["features"], "properties": {"mu": null, "sigma": null}},
        ],
    }
    npz = {
        "type": "object",
        "properties": {
            "mu": mu,
            "sigma": sigma,
            "feature_space": {
                "type": "string",
                "minLength": 1,
                "maxLength": FEATURE_SPACE_MAX_LENGTH,
                "pattern": FEATURE_SPACE_PATTERN,
            },
        },
        "required": ["mu", "sigma"],
    }
    return {
        "required": True,
        "content": {
            JSON: {"schema": schema},
            NPY: _binary(".npy (numpy.save) of features (n, d) to fit", features),
            NPZ: _binary(
                ".npz (numpy.savez or numpy.savez_compressed) with mu (d,) and sigma (d, d); "
                "optionally feature_space (a string) and other members (left unread), at most "
                "16 in all",
                npz,
            ),
        },
    }


_BODY_KEY = "x-documented-by"
_BODY_DOCS: dict[str, BodyDoc] = {}


def documented_body(key: str, doc: BodyDoc) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads its body itself: ``doc`` writes its
    ``requestBody`` when the document is built (``key`` names it until then)."""
    _BODY_DOCS[key] = doc
    return {"requestBody": {"content": {}, _BODY_KEY: key}}


def install_openapi(app: FastAPI, limits: Limits) -> None:
    """Build ``app``'s document once, when first asked, with the bodies ``limits`` allow."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for operations in document["paths"].values():
                for operation in operations.values():
                    key = operation.get("requestBody", {}).get(_BODY_KEY)
                    if key is not None:
                        operation["requestBody"] = _BODY_DOCS[key](limits)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
