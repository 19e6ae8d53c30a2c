"""Target ``.npz`` bodies spooled to disk: reference batches of any size become targets.

ADM's reference batches hold the images (``arr_0``, gigabytes) beside ``mu`` and ``sigma``. The
body is streamed into an anonymous temporary file under its own limit
(``DISTREWARD_MAX_TARGET_NPZ_BYTES``), and only the ``mu``, ``sigma`` and ``feature_space``
members are read from it, each bounded by ``DISTREWARD_MAX_BODY_BYTES``: memory stays that of the
statistics whatever else the archive holds, and the file is gone when the request is.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO

import numpy as np
from fastapi import Request

from ..errors import BadInput
from ..feature_spaces import FEATURE_SPACE_MAX_LENGTH, FEATURE_SPACE_PATTERN
from ..limits import Limits
from ..settings import Settings
from . import wire

__all__ = ["TargetStatistics", "read_target_npz", "spooled_body"]

# A string array of one identifier: numpy's header plus 4 bytes (UTF-32) per character.
_SPACE_MEMBER_BYTES = 256 + 4 * FEATURE_SPACE_MAX_LENGTH


def _too_large(size: int, limit: int) -> str:
    return (
        f"target .npz of {size} bytes exceeds DISTREWARD_MAX_TARGET_NPZ_BYTES ({limit} bytes); "
        "send only its mu and sigma (reward_client: put_target(name, stats=path) reads just "
        "those), or raise the setting"
    )


@asynccontextmanager
async def spooled_body(request: Request, settings: Settings) -> AsyncIterator[IO[bytes]]:
    """The body in a temporary file (rewound), refused by its declared and by its streamed size
    before the limit is crossed; the file is deleted on exit."""
    limit = settings.max_target_npz_bytes
    with tempfile.TemporaryFile(dir=settings.spool_dir or None) as file:
        async for chunk in wire.bounded_chunks(request, limit, _too_large):
            file.write(chunk)
        file.seek(0)
        yield file


@dataclass(frozen=True)
class TargetStatistics:
    """``mu``, ``sigma`` and the recorded feature space (None: the file records none)."""

    mu: np.ndarray
    sigma: np.ndarray
    feature_space: str | None


def read_target_npz(file: IO[bytes], limits: Limits, member_limit: int) -> TargetStatistics:
    """``mu`` and ``sigma`` of an ``.npz`` (any other members are left unread) and its
    ``feature_space`` member when present (a string, as reward_client's stats files hold it)."""
    members = {"mu": limits.mu, "sigma": limits.sigma}
    arrays = wire.decode_npz(file, members, limits, member_limit)
    file.seek(0)
    return TargetStatistics(arrays["mu"], arrays["sigma"], _feature_space(file))


def _feature_space(file: IO[bytes]) -> str | None:
    try:
        with zipfile.ZipFile(file) as archive:
            try:
                info = archive.getinfo("feature_space.npy")
            except KeyError:
                return None
            if info.file_size > _SPACE_MEMBER_BYTES:
                raise BadInput(
                    f"feature_space member of {info.file_size} bytes: it holds one identifier "
                    f"of at most {FEATURE_SPACE_MAX_LENGTH} characters"
                )
            with archive.open(info) as member:
                value = np.lib.format.read_array(member, allow_pickle=False)
    except (*wire.ARCHIVE_ERRORS, ValueError) as exc:
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
