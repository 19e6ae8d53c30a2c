"""Request bodies to arrays: size-capped reads and safe ``.npy`` / JSON decoding.

Everything is checked before any work is done on the values: the body size while it streams in,
the ``.npy`` header (dtype, shape, byte count; the shape against :class:`~reward_service.limits.
Limits`) before the data is touched, then the shape of the decoded array. The service checks the
values (finite, in range) with the same limits. Pickled or object arrays are never loaded.

:class:`ArrayBody` is the dependency routes take their array body from, in either wire format.
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Final, Generic, Literal, NoReturn, TypeVar, cast

import numpy as np
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from ..admission import Ticket
from ..cost import check_cost
from ..errors import (
    BadInput,
    BodyTimeout,
    PayloadTooLarge,
    Unavailable,
    Unprocessable,
    UnsupportedMediaType,
)
from ..limits import ArraySpec, Limits
from ..service import ReferenceService
from ..settings import Settings
from . import json_array
from .deps import CallerKey, RefName, ServiceDep, SettingsDep, check_parameters, declared_query

__all__ = [
    "JSON",
    "NPY",
    "NPZ",
    "ArrayBody",
    "Decoded",
    "Payload",
    "ShapeCheck",
    "decode_json",
    "decode_npy",
    "media_type",
    "parse_json",
    "read_payload",
]

MediaType = Literal["application/json", "application/x-npy", "application/x-npz"]
JSON: Final = "application/json"
NPY: Final = "application/x-npy"
NPZ: Final = "application/x-npz"

_FLOAT_DTYPES = {np.dtype("<f2"), np.dtype("<f4"), np.dtype("<f8")}
_NPY_MAGIC = b"\x93NUMPY"
_MAX_HEAD_BYTES = 12 + 10_000  # magic, version, length field, header (numpy's default cap)
M = TypeVar("M", bound=BaseModel)
ShapeCheck = Callable[[tuple[int, ...]], None]

MEMBER_OBJECT_BYTES = 24
"""Memory reserved per byte of the members beside a JSON body's arrays before they are validated:
they become Python objects, up to 18 bytes a byte measured (``indices`` as lists of one-int
lists), so the members a body may carry (``DISTREWARD_MAX_JSON_FIELDS_BYTES``) are paid for too."""


def media_type(request: Request) -> str:
    """The ``Content-Type`` sent, without parameters, lower case ("" when none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class Payload:
    media_type: MediaType
    data: bytearray


async def read_payload(
    request: Request,
    accepted: tuple[MediaType, ...],
    settings: Settings,
    ticket: Ticket,
    check_shape: ShapeCheck | None = None,
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
            head += chunk[: _MAX_HEAD_BYTES - len(head)]
            header = _npy_header(head)
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


def parse_json(model: type[M], data: bytes) -> M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise Unprocessable(
            f"JSON body does not match the documented schema at {where!r}: {first['msg']} "
            f"({exc.error_count()} error(s))"
        ) from exc


async def decode_json(
    data: bytes | bytearray,
    model: type[M],
    specs: dict[str, ArraySpec],
    settings: Settings,
    ticket: Ticket,
    check: Callable[[dict[str, tuple[int, ...]], M], None],
) -> tuple[dict[str, np.ndarray], M]:
    """The arrays of a JSON body (those of ``specs`` it holds, by member name) and its other
    members, validated by ``model``; decoded in worker threads, within reserved memory
    (:mod:`.json_array`).

    The decoder's temporaries are reserved first. The body is split, its member names checked,
    its members validated and each array's shape counted; ``check`` (the route's limits) sees
    the shapes and the members before the arrays' 8 bytes a value are reserved and they are
    decoded. The caller settles the ticket to the arrays once it drops the body."""
    await ticket.reserve(json_array.DECODE_TEMPORARY_BYTES)
    body = await asyncio.to_thread(_split_json, data, tuple(specs), settings.max_json_fields_bytes)
    await ticket.reserve(MEMBER_OBJECT_BYTES * len(body.rest))
    members, shapes = await asyncio.to_thread(_members_and_shapes, body, model, specs)
    check(shapes, members)
    await ticket.reserve(8 * sum(math.prod(shape) for shape in shapes.values()))
    return await asyncio.to_thread(_decode_arrays, body, specs, shapes), members


def _split_json(
    data: bytes | bytearray, fields: tuple[str, ...], rest_limit: int
) -> json_array.JsonBody:
    """:func:`decode_json`'s first pass: the arrays found, the other members' text checked."""
    body = json_array.split_json(data, fields, rest_limit)
    json_array.check_member_names(body.rest)
    return body


def _members_and_shapes(
    body: json_array.JsonBody, model: type[M], specs: dict[str, ArraySpec]
) -> tuple[M, dict[str, tuple[int, ...]]]:
    """:func:`decode_json`'s second pass: the members validated, each array's shape counted."""
    members = parse_json(json_array.without_arrays(model, tuple(specs)), body.rest)
    shapes = {
        field: json_array.array_shape(found, specs[field].ndim, specs[field].what)
        for field, found in body.arrays.items()
    }
    return cast(M, members), shapes


def _decode_arrays(
    body: json_array.JsonBody, specs: dict[str, ArraySpec], shapes: dict[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """:func:`decode_json`'s second pass: each array allocated and its numbers parsed in."""
    arrays = {}
    for field, found in body.arrays.items():
        arrays[field] = np.empty(shapes[field], dtype=np.float64)
        json_array.fill_array(found, arrays[field], specs[field].what)
    return arrays


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header announces; ``offset`` is where the data starts."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int

    @property
    def data_bytes(self) -> int:
        # math.prod on Python integers: a crafted shape cannot overflow into a small size.
        return math.prod(self.shape) * self.dtype.itemsize


def _npy_header(prefix: bytes | bytearray, what: str = "body") -> NpyHeader | None:
    """The header of a ``.npy`` file from its first bytes; None while it is incomplete.

    Layout: magic (6 bytes), version (2), header length (2 bytes in v1, 4 in v2/v3), header.
    """
    if len(prefix) < len(_NPY_MAGIC):
        return None
    if not prefix.startswith(_NPY_MAGIC):
        raise BadInput(f"{what}: body is not a .npy file (save it with numpy.save)")
    if len(prefix) < 8:
        return None
    length_bytes = 2 if prefix[6] == 1 else 4
    if len(prefix) < 8 + length_bytes:
        return None
    end = 8 + length_bytes + int.from_bytes(prefix[8 : 8 + length_bytes], "little")
    if end > _MAX_HEAD_BYTES:  # numpy's own cap; a longer one is no array we would accept
        raise BadInput(f"{what}: .npy header of {end} bytes; numpy.save writes short ones")
    if len(prefix) < end:
        return None
    stream = io.BytesIO(prefix[:end])
    try:
        major, _minor = np.lib.format.read_magic(stream)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except ValueError as exc:
        raise BadInput(f"{what}: unreadable .npy header: {exc}") from exc
    if dtype not in _FLOAT_DTYPES:
        raise BadInput(
            f"{what}: dtype {dtype.str!r} is not accepted; send little-endian float16, float32 "
            "or float64"
        )
    return NpyHeader(tuple(shape), bool(fortran), dtype, stream.tell())


def _check_header(header: NpyHeader, declared: int | None, check: ShapeCheck | None) -> None:
    """Refuse a body by its header alone: the route's shape limits, and a ``Content-Length``
    that does not match the size the header announces."""
    if check is not None:
        check(header.shape)
    expected = header.offset + header.data_bytes
    if declared is not None and declared != expected:
        raise BadInput(
            f"the .npy header announces shape {header.shape} ({header.data_bytes} bytes) but "
            f"{declared - header.offset} bytes follow"
        )


def decode_npy(data: bytes | bytearray, spec: ArraySpec, limits: Limits) -> np.ndarray:
    """An array of ``spec``'s shape from ``.npy`` bytes, header checked first."""
    header = _npy_header(data, spec.what)
    if header is None:
        raise BadInput(f"{spec.what}: the .npy header is truncated")
    limits.check_shape(spec, header.shape)
    if len(data) - header.offset != header.data_bytes:
        raise BadInput(
            f"{spec.what}: the .npy header announces shape {header.shape} ({header.data_bytes} "
            f"bytes) but {len(data) - header.offset} bytes follow"
        )
    view = np.frombuffer(data, dtype=header.dtype, offset=header.offset).reshape(
        header.shape, order="F" if header.fortran else "C"
    )
    return np.array(view)  # own, writable copy: the body buffer is not


class _HeldWidthDiffers(Exception):
    """A body's d differs from the reference's as this process holds it: refused only once the
    stored record confirms it (:func:`_confirm_width`)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__(shape)
        self.shape = shape


async def _confirm_width(
    service: ReferenceService, name: str, spec: ArraySpec, shape: tuple[int, ...]
) -> NoReturn:
    """Refuse a body by the stored reference's d. The held record may be older than the
    store's: a reference deleted and created again with another d through another replica.
    Reading the view brings this process up to the stored record; a body that fits it is then
    answered 503 (send it again), since its bytes were consumed by the early refusal."""
    stored = (await service.view(name)).state.meta.d
    service.limits.check_shape(spec, shape, stored)  # the 400 naming both d
    raise Unavailable(
        "reference",
        f"this replica held an older record of {name!r} and has now read the stored one "
        f"(d={stored}); send the request again",
    )


async def _parameters_first(request: Request) -> None:
    """The request's parameters, checked before its body is admitted or read.

    Parameters come from one place per wire format: a JSON body's members, or the query string
    beside a ``.npy`` body. A query parameter beside a JSON body, or one the route does not
    take, is refused (400 naming it), never ignored: ignored, a ``commit_fraction`` commits
    nothing and a ``row`` replaces another row. Then every declared parameter and header is
    validated (422), as FastAPI would only after the body."""
    given = list(dict.fromkeys(request.query_params))  # each name once, in order
    if given and media_type(request) == JSON:
        raise BadInput(
            f"query parameters beside a JSON body ({', '.join(given)}): with a JSON body every "
            "parameter is a member of it; send them in the body (or the array as .npy, its "
            "parameters in the query string)"
        )
    taken = declared_query(request)
    unknown = [name for name in given if name not in taken]
    if unknown:
        raise BadInput(
            f"query parameters this route does not take: {', '.join(unknown)}; it takes "
            + (", ".join(sorted(taken)) or "none")
        )
    check_parameters(request)


@dataclass(frozen=True)
class Decoded(Generic[M]):
    """An array body: the array, and the JSON body it came in (None for ``.npy``, whose
    parameters are in the query string)."""

    array: np.ndarray
    json: M | None


class ArrayBody(Generic[M]):
    """Dependency: a route's array body of ``spec``, as ``.npy`` or as the field ``field`` of the
    JSON ``model``, admitted by :class:`~reward_service.admission.Admission` for the duration of
    the request: the caller's share of requests in flight, and memory reserved from the decode
    budget as the body arrives (a ``.npy`` body twice, for its decoded copy) and before a JSON
    array is decoded (8 bytes a value, and the decoder's temporaries), kept for the decoded
    array until the answer.

    Refused before the work they announce: a request by its parameters and headers
    (:func:`_parameters_first`) before it is admitted; a ``.npy`` body by its header (shape, d
    when this process holds the reference, and the cost bound) before the rest of it is read; a
    JSON body by its array's shape, counted over the text (:mod:`.json_array`), before it is
    allocated.
    Requests that choose an engine ``method`` (rewards, credits) are held to the cost bound
    (:func:`~reward_service.cost.check_cost`)."""

    def __init__(self, spec_of: Callable[[Limits], ArraySpec], model: type[M], field: str) -> None:
        # The spec is the service's (``limits.groups``), bounded by its settings; the OpenAPI
        # document describes the body from the same three (``openapi.array_doc``).
        self.spec_of = spec_of
        self.model = model
        self.field = field
        self._costed = "method" in model.model_fields

    async def __call__(
        self,
        _: Annotated[None, Depends(_parameters_first)],
        name: RefName,
        request: Request,
        service: ServiceDep,
        settings: SettingsDep,
        caller: CallerKey,
    ) -> AsyncIterator[Decoded[M]]:
        limits = service.limits
        spec = self.spec_of(limits)
        width = service.held_width(name)
        lowrank_ready = service.held_lowrank_ready(name)

        def check(shape: tuple[int, ...], method: str) -> None:
            limits.check_shape(spec, shape)
            if width is not None and shape[-1] != width:
                raise _HeldWidthDiffers(shape)
            if self._costed:
                check_cost(spec.what, shape, method, settings.max_request_gflop, lowrank_ready)

        async with service.admission.admit(caller) as ticket:
            try:
                decoded = await self._decoded(request, spec, limits, settings, ticket, check)
            except _HeldWidthDiffers as differs:
                await _confirm_width(service, name, spec, differs.shape)
            yield decoded

    async def _decoded(
        self,
        request: Request,
        spec: ArraySpec,
        limits: Limits,
        settings: Settings,
        ticket: Ticket,
        check: Callable[[tuple[int, ...], str], None],
    ) -> Decoded[M]:
        method = request.query_params.get("method", "lowrank")
        payload = await read_payload(
            request, (NPY, JSON), settings, ticket, lambda shape: check(shape, method)
        )
        if payload.media_type == NPY:
            # A copy of up to the body limit: in a worker thread, as JSON is decoded.
            array = await asyncio.to_thread(decode_npy, payload.data, spec, limits)
            decoded: Decoded[M] = Decoded(array, None)
        else:
            decoded = await self._json(payload.data, spec, settings, ticket, check)
        del payload  # the body goes; the decoded array stays reserved until the answer
        await ticket.settle(decoded.array.nbytes)
        return decoded

    async def _json(
        self,
        data: bytes | bytearray,
        spec: ArraySpec,
        settings: Settings,
        ticket: Ticket,
        check: Callable[[tuple[int, ...], str], None],
    ) -> Decoded[M]:
        """The JSON body (:func:`decode_json`): its array checked by its shape and the method
        its members choose."""

        def check_array(shapes: dict[str, tuple[int, ...]], members: M) -> None:
            if self.field not in shapes:
                raise Unprocessable(
                    f"the JSON body has no array member {self.field!r}; send it as nested lists"
                )
            check(shapes[self.field], str(getattr(members, "method", "lowrank")))

        specs = {self.field: spec}
        arrays, members = await decode_json(data, self.model, specs, settings, ticket, check_array)
        return Decoded(arrays[self.field], members)
