"""Errors raised by the reward client.

One tree, so a trainer can catch as broadly or as narrowly as it needs::

    RewardClientError                 anything this package raises
    ├── TransportError                the service could not be reached or did not answer
    │   └── RequestTimeout              ... within the configured timeout
    ├── ProtocolError                 the service answered something this client cannot read
    └── APIError                      the service answered with an error status
        ├── ServiceUnavailable          503 (and 502 / 504 from a proxy): retried; `retry_after`
        │   └── TooManyRequests           429 the token's share is in use: retried; `retry_after`
        ├── ServerError                 any other 5xx: a service bug, never retried
        └── ClientRequestError          other 4xx: the request itself is wrong, never retried
            ├── BadRequest                400 wrong d, NaN / Inf, ragged or empty groups ...
            ├── Unauthorized              401 missing or unknown token
            ├── Forbidden                 403 trainer token on an admin route
            ├── NotFound                  404 unknown reference
            ├── Conflict                  409 state conflict (e.g. no pool yet)
            │   └── VersionMismatch         409 on a request that pinned a version
            ├── PayloadTooLarge           413 body or batch too large
            ├── UnsupportedMediaType      415 wrong content type
            └── UnprocessableEntity       422 malformed parameters

Lower-level errors (httpx) are translated where they cross into this package, with
``raise ... from exc`` so the original stays on ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "BadRequest",
    "ClientRequestError",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ProtocolError",
    "RequestTimeout",
    "RewardClientError",
    "ServerError",
    "ServiceUnavailable",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "UnprocessableEntity",
    "UnsupportedMediaType",
    "VersionMismatch",
]


class RewardClientError(Exception):
    """Base class of every error this package raises."""


class TransportError(RewardClientError):
    """The request did not get an HTTP answer: connection refused or reset, DNS, timeout.

    Raised after the configured retries are spent; ``__cause__`` is the last httpx error.
    """


class RequestTimeout(TransportError):
    """No answer within the configured timeout."""


class ProtocolError(RewardClientError):
    """The answer was not the JSON document the contract promises for this route."""


class APIError(RewardClientError):
    """The service answered with an error status.

    ``detail`` is the service's own explanation (the ``detail`` field of its JSON error
    body), which says what to fix.
    """

    def __init__(self, status_code: int, detail: str, *, method: str = "", url: str = "") -> None:
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.url = url
        where = f" ({method} {url})" if method else ""
        super().__init__(f"{status_code}{where}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its fields, not by its formatted message (which the constructor does
        not take): an error raised in a worker process (ProcessPoolExecutor, torch
        multiprocessing) reaches the parent whole instead of breaking the pool."""
        return (_restored, (type(self), self.args, dict(self.__dict__)))

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, APIError)
            and other.args == self.args
            and other.__dict__ == self.__dict__
        )

    def __hash__(self) -> int:
        return hash((type(self), self.args))


def _restored(cls: type[APIError], args: tuple[Any, ...], state: dict[str, Any]) -> APIError:
    """An :class:`APIError` of ``cls`` with ``args`` and attributes ``state`` (unpickling)."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ServiceUnavailable(APIError):
    """The service (or the proxy in front of it) cannot serve the request right now.

    ``retry_after`` is the wait the service asked for, in seconds, when it sent
    ``Retry-After``. The client retries these itself; this reaches the caller only after
    the retries are spent.
    """

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        retry_after: float | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(status_code, detail, method=method, url=url)
        self.retry_after = retry_after


class TooManyRequests(ServiceUnavailable):
    """429: the service admits no more of this token's requests right now (its share of
    requests in flight, or of the memory for decoding bodies, is in use). Nothing was applied;
    retried after ``retry_after`` like a 503."""


class ServerError(APIError):
    """A 5xx other than 502/503/504. The contract promises none, so it is a service bug."""


class ClientRequestError(APIError):
    """A 4xx other than 429 (`TooManyRequests`): the request is wrong and sending it again
    would fail the same way."""


class BadRequest(ClientRequestError):
    """400: values the service refuses (wrong d, NaN / Inf, empty or ragged groups ...)."""


class Unauthorized(ClientRequestError):
    """401: the bearer token is missing or unknown."""


class Forbidden(ClientRequestError):
    """403: the token is valid but its role may not do this (trainer on an admin route)."""


class NotFound(ClientRequestError):
    """404: unknown reference."""


class Conflict(ClientRequestError):
    """409: the reference is not in a state that allows this (e.g. no pool yet)."""


class VersionMismatch(Conflict):
    """409 on a request that pinned a pool version: the service holds a different one."""


class PayloadTooLarge(ClientRequestError):
    """413: body or batch too large; send fewer groups (or smaller pool chunks)."""


class UnsupportedMediaType(ClientRequestError):
    """415: the service does not accept this content type on this route."""


class UnprocessableEntity(ClientRequestError):
    """422: malformed parameters (types, missing fields)."""


_BY_STATUS: dict[int, type[ClientRequestError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: UnprocessableEntity,
}

#: Statuses that mean "not now" rather than "not this request": worth another try.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


def error_for_status(
    status_code: int,
    detail: str,
    *,
    retry_after: float | None = None,
    version_pinned: bool = False,
    method: str = "",
    url: str = "",
) -> APIError:
    """The exception for an error status, most specific class first.

    A 409 on a request that pinned a version is a ``VersionMismatch``: the contract gives
    409 for both "no pool yet" and "pinned version differs", and only the request knows
    which one it risked.
    """
    if status_code in RETRYABLE_STATUSES:
        unavailable = TooManyRequests if status_code == 429 else ServiceUnavailable
        return unavailable(status_code, detail, retry_after=retry_after, method=method, url=url)
    if status_code >= 500:
        return ServerError(status_code, detail, method=method, url=url)
    if status_code == 409 and version_pinned:
        return VersionMismatch(status_code, detail, method=method, url=url)
    cls = _BY_STATUS.get(status_code, ClientRequestError)
    return cls(status_code, detail, method=method, url=url)
