"""Request bodies read as they stream in: refused by ``Content-Type``, by size and by a ``.npy``
header before they are all in memory, each chunk's memory reserved before it is kept.

A declared ``Content-Length`` over the limit is refused before a byte is read, a body that
streams past it at the chunk that crosses it, and one that stops arriving after the idle timeout
(408). A ``.npy`` body's header is decoded (:mod:`.decoding`) as soon as it has arrived and the
route's shape limits run on the shape it announces, so an oversize batch costs one header, not
the whole body. What the bytes decode to is :mod:`.decoding`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final, Literal

from fastapi import Request

from ..admission import Ticket
from ..errors import BadInput, BodyTimeout, PayloadTooLarge, UnsupportedMediaType
from ..settings import Settings
from .decoding import NPY_HEADER_BYTES, NpyHeader, ShapeCheck, npy_header

__all__ = [
    "JSON",
    "NPY",
    "NPZ",
    "MediaType",
    "Payload",
    "bounded_chunks",
    "declared_length",
    "media_type",
    "read_payload",
]

MediaType = Literal["application/json", "application/x-npy", "application/x-npz"]
JSON: Final = "application/json"
NPY: Final = "application/x-npy"
NPZ: Final = "application/x-npz"


def media_type(request: Request) -> str:
    """The ``Content-Type`` sent, without parameters, lower case ("" when none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class Payload:
    """A body read whole: a ``.npy`` one had its header's shape checked as it arrived."""

    media_type: MediaType
    data: bytearray


async def read_payload(
    request: Request,
    accepted: tuple[MediaType, ...],
    settings: Settings,
    ticket: Ticket,
    check_shape: ShapeCheck,
) -> Payload:
    """The body, refused by ``Content-Type`` first and by size before it is all in memory, its
    memory reserved on ``ticket`` as it arrives.

    A declared ``Content-Length`` over the body limit is refused before a byte is read; a body
    that streams past the limit is refused at the chunk that crosses it, and one that stops
    arriving after the idle timeout (:func:`bounded_chunks`). Each chunk is reserved before it
    is kept (a ``.npy`` body's twice, for its decoded copy): a body that is slow, or announces
    more than it sends, holds what it has sent. For ``.npy`` bodies the header is decoded as
    soon as it has arrived, and ``check_shape`` (the route's G/K/d limits) runs on the
    announced shape, so an oversize batch costs one header, not the whole body.
    """
    sent = media_type(request)
    kind = next((kind for kind in accepted if kind == sent), None)
    if kind is None:
        raise UnsupportedMediaType(
            f"Content-Type {sent or '(none)'!r} is not accepted here; send one of "
            + ", ".join(accepted)
        )
    declared = declared_length(request)
    per_byte = 2 if kind == NPY else 1
    head = bytearray() if kind == NPY else None  # the .npy header while it arrives
    data = bytearray()  # grown in place: joining chunks would hold the body twice
    idle = settings.body_idle_timeout_seconds
    async for chunk in bounded_chunks(request, settings.max_body_bytes, _too_large, idle):
        await ticket.reserve(per_byte * len(chunk))
        data += chunk
        if head is not None:
            head += chunk[: NPY_HEADER_BYTES - len(head)]
            header = npy_header(head)
            if header is not None:
                head = None
                _check_header(header, declared, check_shape)
    return Payload(kind, data)


def declared_length(request: Request) -> int | None:
    """The body's ``Content-Length``, when the request declares one."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


async def bounded_chunks(
    request: Request, limit: int, too_large: Callable[[int, int], str], idle_seconds: float
) -> AsyncIterator[bytes]:
    """The body's chunks, within ``limit`` bytes: a declared ``Content-Length`` over it is
    refused before a byte is read, a body that streams past it at the chunk that crosses it
    (``too_large(size, limit)`` says what to do instead); an empty body is refused, and one
    that sends nothing for ``idle_seconds`` is answered 408 (its request gives back what it
    holds)."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(too_large(declared, limit))
    size = 0
    stream = request.stream()
    while True:
        try:  # the wait for bytes, nothing else (wait_for: asyncio.timeout is 3.11's)
            chunk = await asyncio.wait_for(anext(stream, None), idle_seconds)
        except asyncio.TimeoutError:
            raise BodyTimeout(
                f"the body stopped arriving: nothing for {idle_seconds:g} s after {size} bytes "
                "(DISTREWARD_BODY_IDLE_TIMEOUT_SECONDS); send it without pauses"
            ) from None
        if chunk is None:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(too_large(size, limit))
        yield chunk
    if size == 0:
        raise BadInput("the request body is empty")


def _too_large(size: int, limit: int) -> str:
    return (
        f"body of {size} bytes exceeds the limit of {limit} bytes; send fewer rows per request "
        "(pools: upload in chunks with PUT then POST .../pool)"
    )


def _check_header(header: NpyHeader, declared: int | None, check: ShapeCheck) -> None:
    """Refuse a body by its header alone: the route's shape limits, and a ``Content-Length``
    that does not match the size the header announces."""
    check(header.shape)
    expected = header.offset + header.data_bytes
    if declared is not None and declared != expected:
        raise BadInput(
            f"the .npy header announces shape {header.shape} ({header.data_bytes} bytes) but "
            f"{declared - header.offset} bytes follow"
        )
