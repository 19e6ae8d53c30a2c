"""Weights files checked by SHA-256 before any byte of them reaches torch."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ._errors import WeightsHashMismatch, WeightsNotFound

__all__ = ["sha256_file", "verify_weights"]

_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Lower-case hex SHA-256 of a file, read in 1 MiB blocks (weights files reach gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(path: str | Path, expected_sha256: str, *, what: str, url: str | None) -> str:
    """Return the SHA-256 of ``path`` when it equals ``expected_sha256``.

    Raises `WeightsNotFound` / `WeightsHashMismatch`, naming ``url`` (where the official file is
    published) so the message says how to get the right file.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsNotFound(file, what, url)
    actual = sha256_file(file)
    if actual != expected_sha256.lower():
        raise WeightsHashMismatch(file, what, expected_sha256.lower(), actual, url)
    return actual
