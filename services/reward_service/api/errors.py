"""Service errors to HTTP answers: JSON ``{"detail": "..."}`` with a 4xx, or 429 / 503 with
``Retry-After``; refusals by a limit or a share (413, 429) are counted by reason.
A new :class:`~reward_service.errors.ServiceError` subclass gets its status in ``_STATUS``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from ..errors import (
    BadInput,
    BodyTimeout,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UnsupportedMediaType,
)

__all__ = ["install_error_handlers"]

log = logging.getLogger(__name__)

_STATUS: dict[type[ServiceError], int] = {
    BadInput: 400,
    NotFound: 404,
    BodyTimeout: 408,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    Unprocessable: 422,
}


def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if isinstance(exc, PayloadTooLarge | TooManyRequests):
        request.app.state.metrics.rejections.labels(exc.reason).inc()
    if isinstance(exc, Unavailable | TooManyRequests):  # 503 counted where it happened
        retry_after = request.app.state.settings.retry_after_seconds
        return JSONResponse(
            {"detail": exc.detail},
            status_code=503 if isinstance(exc, Unavailable) else 429,
            headers={"Retry-After": str(retry_after)},
        )
    if isinstance(exc, Unauthorized):
        if exc.forbidden:
            return JSONResponse({"detail": exc.detail}, status_code=403)
        return JSONResponse(
            {"detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    # A body that stopped arriving is left unread: the connection cannot serve another request.
    closing = {"Connection": "close"} if isinstance(exc, BodyTimeout) else None
    return JSONResponse({"detail": exc.detail}, status_code=_STATUS[type(exc)], headers=closing)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(parts) or "malformed request"}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's own answers (404 unknown path, 405). A 405 names every method the path
    serves: the router only names those of the first route whose path matched, and a resource
    such as ``/v1/references/{name}`` has one route per method."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = [method for method in _METHODS if _serves(request, method)]
        exc = HTTPException(405, exc.detail, headers={"Allow": ", ".join(allowed)})
    return await http_exception_handler(request, exc)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _serves(request: Request, method: str) -> bool:
    """Whether a route of the app serves ``method`` on the request's path."""
    scope = {**request.scope, "method": method}
    return any(route.matches(scope)[0] is Match.FULL for route in request.app.routes)


def _client_disconnect(request: Request, _: Exception) -> JSONResponse:
    """The client hung up before its body was complete: nothing was changed and nobody is left
    to answer. 499 ("client closed request", as nginx counts it) keeps this out of the 5xx
    metrics; it is not an error of the service."""
    log.info("client disconnected mid-body on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"detail": "client disconnected before the body was complete"}, status_code=499
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc
    )
    return JSONResponse({"detail": "internal error; see the service log"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected)
