"""Errors the service layer raises; the API maps each to an HTTP status (``api/errors.py``)."""

from __future__ import annotations

from typing import Literal

__all__ = [
    "BadInput",
    "BodyTimeout",
    "Conflict",
    "NotFound",
    "PayloadTooLarge",
    "RejectionReason",
    "ServiceError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UnsupportedMediaType",
]


#: Why a request was refused by a limit or a share (413 / 429): the ``reason`` label of the
#: ``distreward_rejections`` metric. ``body_size``: bytes over the body limit; ``shape``: G, K or
#: B over their limits; ``json_fields``: a JSON body's members beside its array over their
#: limit; ``cost``: estimated engine work over the bound; ``decode_memory``: the memory for
#: decoding bodies; ``token_in_flight``: the token's share of requests in flight.
RejectionReason = Literal[
    "body_size", "shape", "json_fields", "cost", "decode_memory", "token_in_flight"
]


class ServiceError(Exception):
    """An error whose message tells the caller what to fix."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadInput(ServiceError):
    """Values that cannot be used: wrong d, non-finite numbers, ragged groups..."""


class BodyTimeout(ServiceError):
    """A request body that stopped arriving (408): nothing came for the idle timeout, and what
    it had reserved is given back."""


class NotFound(ServiceError):
    """Unknown reference."""


class Conflict(ServiceError):
    """The reference is not in a state for this request (no pool yet, pinned version moved)."""


class PayloadTooLarge(ServiceError):
    """A request over a configured limit: its body, group count or size, estimated work or
    decoding memory; ``reason`` names which (the ``reason`` label of the rejections metric)."""

    def __init__(self, detail: str, *, reason: RejectionReason = "body_size") -> None:
        super().__init__(detail)
        self.reason = reason


class TooManyRequests(ServiceError):
    """Admission refused for now (429 with ``Retry-After``): the caller's token has its share of
    requests in flight, or the memory for decoding bodies is taken; ``reason`` names which."""

    def __init__(self, detail: str, *, reason: RejectionReason) -> None:
        super().__init__(detail)
        self.reason = reason


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
