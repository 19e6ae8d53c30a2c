"""Arrays to bytes and back for stores that keep bytes: the ``.npy`` format, never pickles."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["array_from_bytes", "array_to_bytes"]


def array_to_bytes(array: np.ndarray) -> bytes:
    """Self-describing (dtype, shape) bytes of ``array``."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    """Inverse of :func:`array_to_bytes`; object arrays are refused."""
    array: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)
    return array
