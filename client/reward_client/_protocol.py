"""The vocabulary between the operations and the two I/O drivers.

Each client operation is written once, as a generator that speaks the contract without
touching a socket (the "sans-I/O" style of h11): it yields a `Call` when it needs a request
sent and a `Sleep` when it wants to wait, is sent back each Call's outcome (an
`httpx.Response`, or the `httpx.RequestError` that stopped it; None after a Sleep), and
returns the decoded result. `RewardClient` drives these generators with blocking calls,
`AsyncRewardClient` with ``await``, both through `advance`.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

__all__ = ["Call", "Done", "Op", "Reply", "Sleep", "advance"]

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One HTTP request, as data. Sent again, unchanged, on each retry."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    content: bytes | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None
    #: False when applying the request twice would differ from applying it once; such a call
    #: is retried only after failures that prove the service never got it.
    replay_safe: bool = True
    #: True when the request pins a pool version, so a 409 means `VersionMismatch`.
    version_pinned: bool = False

    def build(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The request, with the client's base URL, headers and timeouts merged in."""
        return http.build_request(
            self.method,
            self.path,
            params=self.params,
            content=self.content,
            json=self.json,
            headers=self.headers,
        )


@dataclass(frozen=True)
class Sleep:
    """A wait the driver performs (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


Reply = httpx.Response | httpx.RequestError | None
Op = Generator[Call | Sleep, Reply, T]


@dataclass(frozen=True)
class Done(Generic[T]):
    """What an operation returned."""

    value: T


def advance(op: Op[T], reply: Reply) -> Call | Sleep | Done[T]:
    """Send ``reply`` into ``op`` (None to start it): its next request or wait, or its result."""
    try:
        return op.send(reply)
    except StopIteration as stop:
        result: T = stop.value  # the generator's return value (untyped on StopIteration)
        return Done(result)
