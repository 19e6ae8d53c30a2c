"""Request bodies to arrays: size-capped reads and safe ``.npy`` / ``.npz`` / JSON decoding.

Everything is checked before any work is done on the values: the body size while it streams in,
the ``.npy`` header (dtype, shape, byte count) before the data is touched, then the shape and
finiteness of the decoded array. Pickled or object arrays are never loaded.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
from fastapi import Request
from pydantic import BaseModel, ValidationError

from ..errors import BadInput, PayloadTooLarge, Unprocessable, UnsupportedMediaType

__all__ = [
    "JSON",
    "NPY",
    "NPZ",
    "Payload",
    "array_from_json",
    "decode_npy",
    "decode_npz",
    "parse_json",
    "read_payload",
]

JSON = "application/json"
NPY = "application/x-npy"
NPZ = "application/x-npz"
MediaType = Literal["application/json", "application/x-npy", "application/x-npz"]

_FLOAT_DTYPES = {np.dtype("<f2"), np.dtype("<f4"), np.dtype("<f8")}
_NPY_MAGIC = b"\x93NUMPY"
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Payload:
    media_type: MediaType
    data: bytes


async def read_payload(request: Request, accepted: tuple[str, ...], limit: int) -> Payload:
    """The body, refused by ``Content-Type`` first and by size before it is all in memory."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type {media_type or '(none)'!r} is not accepted here; send one of "
            + ", ".join(accepted)
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(size, limit))
        chunks.append(chunk)
    if size == 0:
        raise BadInput("the request body is empty")
    return Payload(media_type, b"".join(chunks))  # type: ignore[arg-type]


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


def decode_npy(data: bytes, ndim: int, what: str) -> np.ndarray:
    """A float array of ``ndim`` dimensions from ``.npy`` bytes, header checked first."""
    if not data.startswith(_NPY_MAGIC):
        raise BadInput(f"{what}: body is not a .npy file (save it with numpy.save)")
    stream = io.BytesIO(data)
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
    _check_shape(tuple(shape), ndim, what)
    expected = int(np.prod(shape)) * dtype.itemsize
    offset = stream.tell()
    if len(data) - offset != expected:
        raise BadInput(
            f"{what}: the .npy header announces shape {tuple(shape)} ({expected} bytes) but "
            f"{len(data) - offset} bytes follow"
        )
    view = np.frombuffer(data, dtype=dtype, offset=offset).reshape(
        shape, order="F" if fortran else "C"
    )
    return _check_finite(np.array(view), what)  # own, writable copy: the body buffer is not


def decode_npz(data: bytes, members: dict[str, int], limit: int) -> dict[str, np.ndarray]:
    """The ``members`` (name: ndim) of an ``.npz`` archive, each decoded like a ``.npy`` body;
    the archive's declared sizes are checked before anything is inflated."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BadInput("body is not an .npz archive (save it with numpy.savez)") from exc
    with archive:
        infos = {info.filename: info for info in archive.infolist()}
        missing = [name for name in members if f"{name}.npy" not in infos]
        if missing:
            raise BadInput(
                f".npz archive lacks {', '.join(missing)}; it needs {', '.join(members)}"
            )
        if sum(infos[f"{name}.npy"].file_size for name in members) > limit:
            raise PayloadTooLarge(f".npz members inflate beyond the limit of {limit} bytes")
        return {
            name: decode_npy(archive.read(f"{name}.npy"), ndim, name)
            for name, ndim in members.items()
        }


def array_from_json(values: list, ndim: int, what: str) -> np.ndarray:  # type: ignore[type-arg]
    """A float64 array from nested lists; ragged nesting is refused with a message."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except ValueError as exc:
        raise BadInput(f"{what}: ragged nesting; every row must have the same length") from exc
    _check_shape(array.shape, ndim, what)
    return _check_finite(array, what)


def _check_shape(shape: tuple[int, ...], ndim: int, what: str) -> None:
    if 0 in shape:
        raise BadInput(f"{what}: empty array (shape {shape}); send at least one row")
    if len(shape) != ndim:
        raise BadInput(f"{what}: expected {ndim} dimensions, got shape {shape}")


def _check_finite(array: np.ndarray, what: str) -> np.ndarray:
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - finite.sum())
        raise BadInput(f"{what}: {bad} NaN or Inf value(s); send finite numbers")
    return array
