"""The array body a route takes, as a FastAPI dependency: admitted, read and decoded within the
caller's shares, and refused before the work it announces.

This is where the body meets the rest of the service: :class:`~reward_service.admission.
Admission` (requests in flight, decoding memory), the cost bound (:mod:`reward_service.cost`)
and the reference as this process holds it (its d). The bytes are read by :mod:`.body_reader`
and decoded by :mod:`.decoding`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Generic, NoReturn, TypeVar

import numpy as np
from fastapi import Depends, Request
from pydantic import BaseModel

from ..admission import Ticket
from ..cost import check_cost
from ..errors import BadInput, Unavailable, Unprocessable
from ..limits import ArraySpec, Limits
from ..service import ReferenceService
from ..settings import Settings
from . import json_array
from .body_reader import JSON, NPY, media_type, read_payload
from .decoding import decode_arrays, decode_npy, members_and_shapes, split_json
from .deps import CallerKey, RefName, ServiceDep, SettingsDep, check_parameters, declared_query
from .feature_space_header import FeatureSpaceDep

__all__ = ["MEMBER_OBJECT_BYTES", "ArrayBody", "Decoded", "decode_json"]

M = TypeVar("M", bound=BaseModel)

MEMBER_OBJECT_BYTES = 24
"""Memory reserved per byte of the members beside a JSON body's arrays before they are validated:
they become Python objects, up to 18 bytes a byte measured (``indices`` as lists of one-int
lists), so the members a body may carry (``DISTREWARD_MAX_JSON_FIELDS_BYTES``) are paid for too."""


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
    (:mod:`.decoding`).

    The decoder's temporaries are reserved first. The body is split, its member names checked,
    its members validated and each array's shape counted; ``check`` (the route's limits) sees
    the shapes and the members before the arrays' 8 bytes a value are reserved and they are
    decoded. The caller settles the ticket to the arrays once it drops the body."""
    await ticket.reserve(json_array.DECODE_TEMPORARY_BYTES)
    body = await asyncio.to_thread(split_json, data, tuple(specs), settings.max_json_fields_bytes)
    await ticket.reserve(MEMBER_OBJECT_BYTES * len(body.rest))
    members, shapes = await asyncio.to_thread(members_and_shapes, body, model, specs)
    check(shapes, members)
    await ticket.reserve(8 * sum(math.prod(shape) for shape in shapes.values()))
    return await asyncio.to_thread(decode_arrays, body, specs, shapes), members


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
        posted: FeatureSpaceDep,  # the route's, run before: the record its space was checked by
    ) -> AsyncIterator[Decoded[M]]:
        limits = service.limits
        spec = self.spec_of(limits)
        width = None if posted.checked is None else posted.checked.d
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
            # A copy of up to the body limit: in a worker thread, as JSON is decoded. Its header
            # was checked as it arrived.
            array = await asyncio.to_thread(decode_npy, payload.data, spec.what)
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
