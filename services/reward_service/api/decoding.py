"""Body bytes to arrays: ``.npy`` files and the passes of a JSON body, as pure functions.

Nothing here reads a request, reserves memory or knows a reference: each function takes bytes
(or what an earlier pass made of them) and returns arrays or refuses them with a 400 / 422 that
says what to fix. Pickled or object arrays are never loaded; a ``.npy`` header (magic, dtype,
shape, byte count) is read and checked before its data is touched, and a JSON array's shape is
counted over its text (:mod:`.json_array`) before it is allocated.

The streamed read is :mod:`.body_reader`'s, and the dependency that admits a body, reserves its
memory and runs these passes in worker threads is :mod:`.array_body`'s.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np
from pydantic import BaseModel, ValidationError

from ..errors import BadInput, Unprocessable
from ..limits import ArraySpec
from . import json_array

__all__ = [
    "NPY_HEADER_BYTES",
    "NpyHeader",
    "ShapeCheck",
    "decode_arrays",
    "decode_npy",
    "members_and_shapes",
    "npy_header",
    "parse_json",
    "split_json",
]

_FLOAT_DTYPES = {np.dtype("<f2"), np.dtype("<f4"), np.dtype("<f8")}
_NPY_MAGIC = b"\x93NUMPY"
NPY_HEADER_BYTES = 12 + 10_000
"""The longest ``.npy`` header read: magic, version, length field, header (numpy's own cap)."""

M = TypeVar("M", bound=BaseModel)
ShapeCheck = Callable[[tuple[int, ...]], None]


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


def npy_header(prefix: bytes | bytearray, what: str = "body") -> NpyHeader | None:
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
    if end > NPY_HEADER_BYTES:  # numpy's own cap; a longer one is no array we would accept
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


def decode_npy(
    data: bytes | bytearray, what: str, check_shape: ShapeCheck | None = None
) -> np.ndarray:
    """An array from ``.npy`` bytes, its own writable copy. The header is read first and
    ``check_shape`` (the limits of the array's shape) runs on the shape it announces, before
    anything is allocated; then the data must be exactly the bytes that shape needs. A body
    streamed in had its header checked as it arrived (:mod:`.body_reader`): it passes none."""
    header = npy_header(data, what)
    if header is None:
        raise BadInput(f"{what}: the .npy header is truncated")
    if check_shape is not None:
        check_shape(header.shape)
    if len(data) - header.offset != header.data_bytes:
        raise BadInput(
            f"{what}: the .npy header announces shape {header.shape} ({header.data_bytes} "
            f"bytes) but {len(data) - header.offset} bytes follow"
        )
    view = np.frombuffer(data, dtype=header.dtype, offset=header.offset).reshape(
        header.shape, order="F" if header.fortran else "C"
    )
    return np.array(view)  # own, writable copy: the body buffer is not


def parse_json(model: type[M], data: bytes | bytearray) -> M:
    """``data`` validated by ``model``: a 422 naming the first member that does not fit."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise Unprocessable(
            f"JSON body does not match the documented schema at {where!r}: {first['msg']} "
            f"({exc.error_count()} error(s))"
        ) from exc


def split_json(
    data: bytes | bytearray, fields: tuple[str, ...], rest_limit: int
) -> json_array.JsonBody:
    """A JSON body's first pass: the array members of ``fields`` found, the other members' text
    (at most ``rest_limit`` bytes) kept apart and their names checked."""
    body = json_array.split_json(data, fields, rest_limit)
    json_array.check_member_names(body.rest)
    return body


def members_and_shapes(
    body: json_array.JsonBody, model: type[M], specs: dict[str, ArraySpec]
) -> tuple[M, dict[str, tuple[int, ...]]]:
    """The second pass: the members beside the arrays validated by ``model``, and each array's
    shape counted over its text (nothing of its size allocated)."""
    members = parse_json(json_array.without_arrays(model, tuple(specs)), body.rest)
    shapes = {
        field: json_array.array_shape(found, specs[field].ndim, specs[field].what)
        for field, found in body.arrays.items()
    }
    return cast(M, members), shapes


def decode_arrays(
    body: json_array.JsonBody, specs: dict[str, ArraySpec], shapes: dict[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """The last pass, once the shapes are accepted: each array allocated (float64) and its
    numbers parsed into it."""
    arrays = {}
    for field, found in body.arrays.items():
        arrays[field] = np.empty(shapes[field], dtype=np.float64)
        json_array.fill_array(found, arrays[field], specs[field].what)
    return arrays
