"""Errors the service layer raises; the API maps each to an HTTP status (``api/errors.py``)."""

from __future__ import annotations

__all__ = [
    "BadInput",
    "Conflict",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UnsupportedMediaType",
]


class ServiceError(Exception):
    """An error whose message tells the caller what to fix."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadInput(ServiceError):
    """Values that cannot be used: wrong d, non-finite numbers, ragged groups..."""


class NotFound(ServiceError):
    """Unknown reference."""


class Conflict(ServiceError):
    """The reference is not in a state for this request (no pool yet, pinned version moved)."""


class PayloadTooLarge(ServiceError):
    """Body, group count or group size over the configured limits."""


class UnsupportedMediaType(ServiceError):
    """A ``Content-Type`` the route does not read."""


class Unauthorized(ServiceError):
    """Missing or unknown token (401) or a trainer token on an admin route (403)."""

    def __init__(self, detail: str, *, forbidden: bool = False) -> None:
        super().__init__(detail)
        self.forbidden = forbidden


class Unprocessable(ServiceError):
    """Malformed parameters or JSON that does not match the documented body (422)."""


class Unavailable(ServiceError):
    """The store cannot be reached for something that needs it (writes; a reference never
    held). The API answers 503 with ``Retry-After``; ``operation`` names what failed."""

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(detail)
        self.operation = operation
