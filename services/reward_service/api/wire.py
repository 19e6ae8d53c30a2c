"""Request bodies to arrays: size-capped reads and safe ``.npy`` / ``.npz`` / JSON decoding.

Everything is checked before any work is done on the values: the body size while it streams in,
the ``.npy`` header (dtype, shape, byte count) before the data is touched, then the shape and
finiteness of the decoded array. Pickled or object arrays are never loaded.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
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
    "ShapeCheck",
    "array_from_json",
    "decode_npy",
    "decode_npz",
    "parse_json",
    "read_payload",
    "shape_limits",
]

JSON = "application/json"
NPY = "application/x-npy"
NPZ = "application/x-npz"
MediaType = Literal["application/json", "application/x-npy", "application/x-npz"]

_FLOAT_DTYPES = {np.dtype("<f2"), np.dtype("<f4"), np.dtype("<f8")}
_NPY_MAGIC = b"\x93NUMPY"
_MAX_HEAD_BYTES = 12 + 10_000  # magic, version, length field, header (numpy's default cap)
M = TypeVar("M", bound=BaseModel)
ShapeCheck = Callable[[tuple[int, ...]], None]


@dataclass(frozen=True)
class Payload:
    media_type: MediaType
    data: bytes


async def read_payload(
    request: Request,
    accepted: tuple[str, ...],
    limit: int,
    check_shape: ShapeCheck | None = None,
) -> Payload:
    """The body, refused by ``Content-Type`` first and by size before it is all in memory.

    A declared ``Content-Length`` over ``limit`` is refused before a byte is read; a body that
    streams past ``limit`` is refused at the chunk that crosses it. For ``.npy`` bodies the
    header is decoded as soon as it has arrived, and ``check_shape`` (the route's G/K/d limits)
    runs on the announced shape, so an oversize batch costs one header, not the whole body.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type {media_type or '(none)'!r} is not accepted here; send one of "
            + ", ".join(accepted)
        )
    declared_text = request.headers.get("content-length")
    declared = int(declared_text) if declared_text and declared_text.isdigit() else None
    if declared is not None and declared > limit:
        raise PayloadTooLarge(_too_large(declared, limit))
    head = bytearray() if media_type == NPY else None  # the .npy header while it arrives
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(size, limit))
        chunks.append(chunk)
        if head is not None:
            head += chunk[: _MAX_HEAD_BYTES - len(head)]
            header = _npy_header(head)
            if header is not None:
                head = None
                _check_header(header, declared, check_shape)
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


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header announces; ``offset`` is where the data starts."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


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


def shape_limits(
    ndim: int, what: str, *, maxima: tuple[int | None, ...] = (), width: int | None = None
) -> ShapeCheck:
    """A ``check_shape`` for :func:`read_payload`: ``ndim`` dimensions, none empty, the leading
    ones at most ``maxima`` (None: unbounded; over → 413), the last equal to ``width`` when the
    reference's d is known (→ 400)."""

    def check(shape: tuple[int, ...]) -> None:
        _check_shape(shape, ndim, what)
        for size, maximum in zip(shape, maxima, strict=False):  # maxima: leading axes
            if maximum is not None and size > maximum:
                raise PayloadTooLarge(
                    f"{what}: shape {shape} exceeds the limit of {maximum} along an axis; "
                    "split the request"
                )
        if width is not None and shape[-1] != width:
            raise BadInput(f"{what} have d={shape[-1]} but the reference has d={width}")

    return check


def decode_npy(data: bytes, ndim: int, what: str) -> np.ndarray:
    """A float array of ``ndim`` dimensions from ``.npy`` bytes, header checked first."""
    header = _npy_header(data, what)
    if header is None:
        raise BadInput(f"{what}: the .npy header is truncated")
    _check_shape(header.shape, ndim, what)
    if len(data) - header.offset != header.data_bytes:
        raise BadInput(
            f"{what}: the .npy header announces shape {header.shape} ({header.data_bytes} "
            f"bytes) but {len(data) - header.offset} bytes follow"
        )
    view = np.frombuffer(data, dtype=header.dtype, offset=header.offset).reshape(
        header.shape, order="F" if header.fortran else "C"
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
