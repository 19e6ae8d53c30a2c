"""Dependencies as ``Annotated`` aliases so route signatures stay short.

Tokens are compared with ``hmac.compare_digest`` against every configured token of both roles
(no early exit), on SHA-256 digests so that every comparison has the same length: response time
tells neither how much of a guess was right nor how long the real tokens are. Tokens are never
logged.

:func:`check_parameters` validates every query parameter and header a route declares, for a
dependency that reads the body to call first: FastAPI validates them only once every dependency
has run.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum
from typing import Annotated, Any, cast

from fastapi import Depends, Path, Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import Unauthorized
from ..metrics import ServiceMetrics
from ..service import ReferenceService
from ..settings import Settings

__all__ = [
    "AdminAuth",
    "CallerKey",
    "MetricsDep",
    "RefName",
    "Role",
    "ServiceDep",
    "SettingsDep",
    "TrainerAuth",
    "check_parameters",
    "declared_query",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class Role(str, Enum):
    TRAINER = "trainer"
    ADMIN = "admin"


# app.state is untyped: each value is put there once, by create_app, with the type named here.
def _settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def _service(request: Request) -> ReferenceService:
    return cast(ReferenceService, request.app.state.service)


def _metrics(request: Request) -> ServiceMetrics:
    return cast(ServiceMetrics, request.app.state.metrics)


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[ReferenceService, Depends(_service)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
RefName = Annotated[str, Path(pattern=NAME_PATTERN, description="reference name")]

_bearer = HTTPBearer(auto_error=False, description="trainer or admin token")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _matches(digest: bytes, candidates: tuple[str, ...]) -> bool:
    """Whether ``digest`` is one of ``candidates``'; every candidate is compared."""
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(digest, _digest(candidate))
    return found


def _role(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> Role:
    if not settings.auth_enabled:
        return Role.ADMIN
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing token: send 'Authorization: Bearer <token>'")
    digest = _digest(credentials.credentials)
    admin = _matches(digest, settings.admin_tokens)
    trainer = _matches(digest, settings.tokens)  # compared even when admin matched
    if admin:
        return Role.ADMIN
    if trainer:
        return Role.TRAINER
    raise Unauthorized("unknown token: use one of the tokens configured on the service")


def _require_trainer(settings: SettingsDep, credentials: Credentials) -> Role:
    return _role(settings, credentials)


def _require_admin(settings: SettingsDep, credentials: Credentials) -> Role:
    role = _role(settings, credentials)
    if role is not Role.ADMIN:
        raise Unauthorized("this route needs an admin token", forbidden=True)
    return role


TrainerAuth = Annotated[Role, Depends(_require_trainer)]


def _caller(settings: SettingsDep, credentials: Credentials) -> str:
    """Who is asking, for the per-token shares (``reward_service.admission``): a digest of the
    token, never the token; "" without authentication. Routes authenticate first."""
    if not settings.auth_enabled or credentials is None:
        return ""
    return _digest(credentials.credentials).hex()


CallerKey = Annotated[str, Depends(_caller)]
AdminAuth = Annotated[Role, Depends(_require_admin)]


def _declared(request: Request) -> tuple[list[Any], list[Any]]:
    """The query parameters and headers the request's route declares, its dependencies'
    included (FastAPI's fields, each once)."""
    route = request.scope["route"]
    assert isinstance(route, APIRoute)
    query: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        query.update((field.alias, field) for field in dependant.query_params)
        headers.update((field.alias.lower(), field) for field in dependant.header_params)
        pending += dependant.dependencies
    return list(query.values()), list(headers.values())


def declared_query(request: Request) -> set[str]:
    """The names of the query parameters the request's route takes."""
    return {field.alias for field in _declared(request)[0]}


def check_parameters(request: Request) -> None:
    """Every query parameter and header the request's route declares, validated now, as FastAPI
    would (the same fields, the same 422). FastAPI validates a route's own parameters, and those
    of a dependency, only once every other dependency has run: a dependency that reads the body
    calls this first, so that a malformed ``seed`` or ``Feature-Space`` costs no body bytes."""
    query, headers = _declared(request)
    errors = request_params_to_args(query, request.query_params)[1]
    errors += request_params_to_args(headers, request.headers)[1]
    if errors:
        raise RequestValidationError(errors)
