"""Target ``.npz`` archives: ``mu``, ``sigma`` and ``feature_space`` read out of a spooled file,
within bounds fixed before any work is done.

An ``.npz`` is a ZIP archive of ``.npy`` members, stored or deflated (numpy writes nothing
else). A target needs two or three of them; ADM's reference batches hold five. The archive is
read here rather than by :mod:`zipfile`, which parses a directory of any length, takes the last
of two members of one name, and inflates a member's whole stream before cutting it at its
declared size (bzip2 and lzma without any bound). Nothing the archive says is trusted before it
is checked:

* the end record is read first, and an archive of more than :data:`MAX_MEMBERS` members is
  refused by that count before its directory is read;
* the directory is parsed once: exactly the announced entries in exactly its announced bytes,
  no name twice;
* only the members asked for are read, stored or deflated (any other method is refused
  unread), deflate in bounded steps that stop as soon as the output passes the size the member
  declares: a stream that would inflate to gigabytes costs its declared size;
* each member's size, CRC-32 and local header are checked against its directory entry.

Anything else is a 400 that says to write the file with numpy; members over the body limit are
a 413. The caller runs :func:`read_target_npz` in a worker thread: it reads and inflates
megabytes.
"""

from __future__ import annotations

import functools
import io
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from ..errors import BadInput, PayloadTooLarge
from ..feature_spaces import FEATURE_SPACE_MAX_LENGTH, FEATURE_SPACE_PATTERN
from ..limits import ArraySpec, Limits
from .decoding import decode_npy

__all__ = ["MAX_MEMBERS", "NpzArchive", "TargetStatistics", "read_target_npz"]

#: Members an archive may hold: a target needs 2 or 3, ADM's reference batches hold 5. A
#: format bound, not a deployment one: the client sends just ``mu`` and ``sigma`` of any file.
MAX_MEMBERS = 16

# ZIP records (APPNOTE.TXT 4.3): signature first, little-endian.
_END = struct.Struct("<IHHHHIIH")  # end of central directory
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")
_ENTRY = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory file header
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # local file header
_END_SIGNATURE = 0x06054B50
_ZIP64_LOCATOR_SIGNATURE = 0x07064B50
_ZIP64_END_SIGNATURE = 0x06064B50
_ENTRY_SIGNATURE = 0x02014B50
_LOCAL_SIGNATURE = 0x04034B50
_ZIP64_EXTRA_ID = 0x0001
_FULL16, _FULL32 = 0xFFFF, 0xFFFFFFFF  # a field whose value is in the zip64 records
_MAX_ENTRY_BYTES = _ENTRY.size + 3 * _FULL16  # fixed part, name, extra field, comment
_ENCRYPTED = 0x0001 | 0x0040  # traditional and strong encryption flags
_UTF8_NAME = 0x0800
_STORED, _DEFLATED = 0, 8
_METHOD_NAMES = {1: "shrink", 6: "implode", 9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstd"}
_CHUNK = 1 << 20  # compressed bytes read, and bytes inflated, per step
# A string array of one identifier: numpy's header plus 4 bytes (UTF-32) per character.
_SPACE_MEMBER_BYTES = 256 + 4 * FEATURE_SPACE_MAX_LENGTH
_WRITE_IT = "save it with numpy.savez or numpy.savez_compressed"


def _damaged(what: str) -> BadInput:
    return BadInput(f"body is not a readable .npz archive: {what}; {_WRITE_IT}")


@dataclass(frozen=True)
class _Member:
    """A directory entry: where a member's local header is and what its data must be."""

    name: str
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    offset: int


@dataclass(frozen=True)
class _Directory:
    count: int
    size: int
    offset: int


class NpzArchive:
    """The members of an ``.npz`` archive in a seekable file, its directory read and checked
    once; :meth:`read` inflates one member within its declared size."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        directory = _directory_of(file)
        if directory.count > MAX_MEMBERS:
            raise BadInput(
                f".npz archive of {directory.count} members: a target's holds mu, sigma and "
                f"feature_space, and at most {MAX_MEMBERS} are read; send the statistics alone "
                "(reward_client: put_target(name, stats=path) reads just mu and sigma)"
            )
        self._data_end = directory.offset
        self._members: dict[str, _Member] = {}
        for member in _entries(file, directory):
            if member.name in self._members:
                raise BadInput(
                    f".npz archive holds {member.name!r} twice; which one is meant is "
                    f"ambiguous (numpy never writes that): {_WRITE_IT}"
                )
            self._members[member.name] = member

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def size(self, name: str) -> int:
        """The size ``name`` declares (its directory entry's)."""
        return self._members[name].size

    def read(self, name: str) -> bytes:
        """The bytes of member ``name``, checked against its entry: refused (400) as soon as it
        inflates past its declared size, and when it ends short of it or its CRC differs."""
        member = self._members[name]
        if member.flags & _ENCRYPTED:
            raise _damaged(f"member {name!r} is encrypted")
        if member.method not in (_STORED, _DEFLATED):
            method = _METHOD_NAMES.get(member.method, "unknown")
            raise BadInput(
                f".npz member {name!r} uses compression method {member.method} ({method}); "
                f"only stored and deflated members are read: {_WRITE_IT}"
            )
        self._file.seek(self._data_start(member))
        if member.method == _STORED:
            data = self._stored(member)
        else:
            data = b"".join(self._inflated(member))
        if len(data) != member.size:
            raise _damaged(
                f"member {name!r} inflates to fewer bytes ({len(data)}) than the "
                f"{member.size} it declares"
            )
        if zlib.crc32(data) != member.crc:
            raise _damaged(f"member {name!r} fails its CRC-32 check")
        return data

    def _data_start(self, member: _Member) -> int:
        """Where ``member``'s data begins, after a local header that names it; its data must
        end before the directory does begin."""
        self._file.seek(member.offset)
        head = self._file.read(_LOCAL.size)
        if len(head) < _LOCAL.size or _LOCAL.unpack(head)[0] != _LOCAL_SIGNATURE:
            raise _damaged(f"no local header where the directory places {member.name!r}")
        name_length: int
        extra_length: int
        name_length, extra_length = _LOCAL.unpack(head)[9:]
        name = _decoded_name(self._file.read(name_length), member.flags)
        if name != member.name:
            raise _damaged(f"the local header of {member.name!r} names {name!r}")
        start = member.offset + _LOCAL.size + name_length + extra_length
        if start + member.compressed_size > self._data_end:
            raise _damaged(f"the data of {member.name!r} runs past the archive's members")
        return start

    def _stored(self, member: _Member) -> bytes:
        if member.compressed_size != member.size:
            raise _damaged(
                f"stored member {member.name!r} holds {member.compressed_size} bytes but "
                f"declares {member.size}"
            )
        return self._file.read(member.size)

    def _inflated(self, member: _Member) -> Iterator[bytes]:
        """The inflated pieces of a deflated member, never more than one byte past its
        declared size in all: each step asks zlib for at most the bytes still due plus one,
        and that one byte refuses the member."""
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        unread, pending, due = member.compressed_size, b"", member.size
        try:
            while not inflater.eof:
                if not pending:
                    pending = self._file.read(min(_CHUNK, unread))
                    if not pending:
                        raise _damaged(f"the deflate stream of {member.name!r} is truncated")
                    unread -= len(pending)
                piece = inflater.decompress(pending, min(due, _CHUNK) + 1)
                if len(piece) > due:
                    raise BadInput(
                        f".npz member {member.name!r} inflates beyond the {member.size} bytes "
                        f"it declares (a zip bomb, or a damaged file): {_WRITE_IT}"
                    )
                due -= len(piece)
                pending = inflater.unconsumed_tail
                yield piece
        except zlib.error as exc:
            raise _damaged(f"the deflate stream of {member.name!r} is corrupt ({exc})") from exc
        if pending or inflater.unused_data or unread:
            raise _damaged(f"compressed data of {member.name!r} continues after its stream ends")


def _directory_of(file: IO[bytes]) -> _Directory:
    """The directory the end record (or its zip64 record) announces, which must end where the
    end records begin: a file written by numpy holds nothing else there."""
    length = file.seek(0, os.SEEK_END)
    tail_start = max(0, length - _END.size - _FULL16)  # the record, then a comment
    file.seek(tail_start)
    tail = file.read()

    def ends_file(at: int) -> bool:  # the record and its comment reach the last byte
        if at + _END.size > len(tail):
            return False
        comment_length: int = _END.unpack_from(tail, at)[7]
        return at + _END.size + comment_length == len(tail)

    signature = struct.pack("<I", _END_SIGNATURE)
    at = tail.rfind(signature)
    while at >= 0 and not ends_file(at):
        at = tail.rfind(signature, 0, at)  # that one was in a comment, or is cut short
    if at < 0:
        raise _damaged("no end of central directory record (truncated, or not a ZIP file)")
    _, disk, start_disk, on_disk, count, size, offset, _ = _END.unpack_from(tail, at)
    end_at = tail_start + at
    locator_at = end_at - _ZIP64_LOCATOR.size
    if locator_at >= 0:
        file.seek(locator_at)
        locator = _ZIP64_LOCATOR.unpack(file.read(_ZIP64_LOCATOR.size))
        if locator[0] == _ZIP64_LOCATOR_SIGNATURE:
            end_at = locator[2]
            file.seek(end_at)
            record = file.read(_ZIP64_END.size)
            fields = _ZIP64_END.unpack(record) if len(record) == _ZIP64_END.size else (0,)
            if fields[0] != _ZIP64_END_SIGNATURE:
                raise _damaged("no zip64 end record where its locator places it")
            disk, start_disk, on_disk, count, size, offset = fields[4:]
    if disk != 0 or start_disk != 0 or on_disk != count:
        raise _damaged("an archive split over several disks")
    if offset + size != end_at:
        raise _damaged("the directory is not where the end record places it")
    return _Directory(count, size, offset)


def _entries(file: IO[bytes], directory: _Directory) -> Iterator[_Member]:
    """The directory's entries: exactly ``count`` of them, filling exactly its ``size``."""
    if directory.size > directory.count * _MAX_ENTRY_BYTES:
        raise _damaged(f"a directory of {directory.size} bytes for {directory.count} members")
    file.seek(directory.offset)
    data = file.read(directory.size)
    at = 0
    for _ in range(directory.count):
        if at + _ENTRY.size > len(data) or _ENTRY.unpack_from(data, at)[0] != _ENTRY_SIGNATURE:
            raise _damaged("the directory holds fewer entries than the end record announces")
        fields = _ENTRY.unpack_from(data, at)
        flags, method, crc, compressed, size = fields[3], fields[4], *fields[7:10]
        name_length, extra_length, comment_length, offset = *fields[10:13], fields[16]
        at += _ENTRY.size
        name = _decoded_name(data[at : at + name_length], flags)
        extra = data[at + name_length : at + name_length + extra_length]
        at += name_length + extra_length + comment_length
        size, compressed, offset = _zip64_values(extra, size, compressed, offset, name)
        yield _Member(name, flags, method, crc, compressed, size, offset)
    if at != directory.size:
        raise _damaged("the directory disagrees with the end record about its entries")


def _zip64_values(
    extra: bytes, size: int, compressed: int, offset: int, name: str
) -> tuple[int, int, int]:
    """Size, compressed size and offset, those that do not fit 32 bits read from the zip64
    extra field (in that order, only those)."""
    fields = (size, compressed, offset)
    if _FULL32 not in fields:
        return fields
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == _ZIP64_EXTRA_ID:
            stored = list(struct.unpack_from(f"<{length // 8}Q", extra[at + 4 : at + 4 + length]))
            needed = fields.count(_FULL32)
            if len(stored) < needed:
                raise _damaged(f"the zip64 field of {name!r} is short")
            values = iter(stored)
            size, compressed, offset = (next(values) if v == _FULL32 else v for v in fields)
            return size, compressed, offset
        at += 4 + length
    raise _damaged(f"{name!r} lacks the zip64 field its entry refers to")


def _decoded_name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & _UTF8_NAME else "cp437", errors="replace")


@dataclass(frozen=True)
class TargetStatistics:
    """``mu``, ``sigma`` and the recorded feature space (None: the file records none)."""

    mu: np.ndarray
    sigma: np.ndarray
    feature_space: str | None


def read_target_npz(file: IO[bytes], limits: Limits, member_limit: int) -> TargetStatistics:
    """``mu`` and ``sigma`` of an ``.npz`` (other members are left unread), within
    ``member_limit`` bytes together, and its ``feature_space`` member when present (a string,
    as reward_client's statistics files hold it)."""
    archive = NpzArchive(file)
    specs = {"mu": limits.mu, "sigma": limits.sigma}
    missing = [name for name in specs if f"{name}.npy" not in archive]
    if missing:
        raise BadInput(f".npz archive lacks {', '.join(missing)}; it needs {', '.join(specs)}")
    if sum(archive.size(f"{name}.npy") for name in specs) > member_limit:
        raise PayloadTooLarge(f".npz members inflate beyond the limit of {member_limit} bytes")
    mu, sigma = (_array(archive, name, spec, limits) for name, spec in specs.items())
    return TargetStatistics(mu, sigma, _feature_space(archive))


def _array(archive: NpzArchive, name: str, spec: ArraySpec, limits: Limits) -> np.ndarray:
    shape_check = functools.partial(limits.check_shape, spec)
    return decode_npy(archive.read(f"{name}.npy"), spec.what, shape_check)


def _feature_space(archive: NpzArchive) -> str | None:
    if "feature_space.npy" not in archive:
        return None
    size = archive.size("feature_space.npy")
    if size > _SPACE_MEMBER_BYTES:
        raise BadInput(
            f"feature_space member of {size} bytes: it holds one identifier of at most "
            f"{FEATURE_SPACE_MAX_LENGTH} characters"
        )
    data = archive.read("feature_space.npy")
    try:
        value = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise BadInput(
            f"unreadable feature_space member ({exc}); write it with numpy.savez"
        ) from exc
    text = str(value) if value.shape == () and value.dtype.kind == "U" else ""
    if len(text) > FEATURE_SPACE_MAX_LENGTH or not re.fullmatch(FEATURE_SPACE_PATTERN, text):
        raise BadInput(
            "feature_space member: expected one string (numpy.array('<identifier>')) of 1 to "
            f"{FEATURE_SPACE_MAX_LENGTH} printable ASCII characters without spaces"
        )
    return text
