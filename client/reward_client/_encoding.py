"""Arrays in, request bodies out.

Trainers hold features as numpy arrays or torch tensors (on any device, possibly with
gradients); the service wants little-endian ``.npy`` (or JSON lists). Torch is optional: it is
never imported here, only recognised when the caller has already imported it, which is the
only way a tensor can exist.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ArrayLike", "as_numpy", "npy_bytes", "read_stats", "stats_npz", "wire_array"]

#: numpy arrays, torch tensors, or nested sequences of numbers.
ArrayLike = Any


def as_numpy(x: ArrayLike, *, ndim: int | tuple[int, ...], name: str) -> npt.NDArray[Any]:
    """``x`` as a numeric numpy array with ``ndim`` dimensions (or one of several); tensors
    are moved to the CPU.

    Raises TypeError for non-numeric input and ValueError for the wrong number of dimensions,
    before anything is sent: a malformed batch is a bug in the caller, not a service error.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:  # numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in allowed:
        expected = " or ".join(map(str, allowed))
        raise ValueError(f"{name} must have {expected} dimensions, got shape {arr.shape}")
    return arr


def wire_array(arr: npt.NDArray[Any], dtype: str, *, name: str) -> npt.NDArray[Any]:
    """``arr`` as contiguous little-endian ``dtype``, refusing NaN / Inf.

    The check runs after the cast, so it also catches values beyond float16's range that the
    cast turned into Inf; the service would refuse them with a 400, one round trip later.
    """
    with np.errstate(over="ignore"):  # overflow is reported below, as a ValueError
        out = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
    if not np.isfinite(out).all():
        hint = " (or beyond the float16 range)" if dtype == "float16" else ""
        raise ValueError(f"{name} contains NaN or Inf{hint}")
    return out


def npy_bytes(arr: npt.NDArray[Any]) -> bytes:
    """One ``.npy`` file holding ``arr`` (never a pickle)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def stats_npz(mu: npt.NDArray[Any], sigma: npt.NDArray[Any]) -> bytes:
    """``mu`` and ``sigma`` as an uncompressed ``.npz``: the pytorch-fid / ADM / EDM
    reference-batch format."""
    buf = io.BytesIO()
    np.savez(buf, mu=mu, sigma=sigma)
    return buf.getvalue()


def read_stats(
    path: str | os.PathLike[str],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], str | None]:
    """``mu``, ``sigma`` (float64) and the ``feature_space`` member (None when the file records
    none) of a statistics ``.npz``: pytorch-fid's, this project's, or an ADM / EDM reference batch.
    Only those members are read (an ADM batch's images stay on disk); never unpickles."""
    with np.load(path, allow_pickle=False) as archive:
        missing = {"mu", "sigma"} - set(archive.files)
        if missing:
            raise ValueError(f"{path} lacks {', '.join(sorted(missing))}; it needs mu and sigma")
        mu = np.asarray(archive["mu"], dtype=np.float64)
        sigma = np.asarray(archive["sigma"], dtype=np.float64)
        space = str(archive["feature_space"][()]) if "feature_space" in archive.files else None
    return mu, sigma, space
