"""Target ``.npz`` bodies spooled to disk: reference batches of any size become targets.

ADM's reference batches hold the images (``arr_0``, gigabytes) beside ``mu`` and ``sigma``. The
body is streamed into an anonymous temporary file under its own limit
(``DISTREWARD_MAX_TARGET_NPZ_BYTES``), from which :mod:`.npz` reads only the statistics: memory
stays that of the statistics whatever else the archive holds, and the file is gone when the
request is.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

from fastapi import Request

from ..settings import Settings
from .body_reader import bounded_chunks

__all__ = ["spooled_body"]


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
        idle = settings.body_idle_timeout_seconds
        async for chunk in bounded_chunks(request, limit, _too_large, idle):
            file.write(chunk)
        file.seek(0)
        yield file
