"""What a request may send, defined in one place: the place to add or change a limit.

:class:`Limits` is built from the settings, and each of its rules runs once per request, where
it can first run:

* the shape (dimensions, sizes, G/K/B maxima) on the shape a ``.npy`` header announces before
  the rest of the body is read (``api/body_reader.py``; a target ``.npz``'s members by theirs,
  ``api/npz.py``), or on a JSON array's shape counted over its text before it is allocated
  (``api/array_body.py``);
* d against the reference's, by the API against the record this process holds before the body
  is read, else by the service against the version it serves (``service.py``);
* the values (finite, within range), the target's relations (sigma ``(d, d)`` for mu,
  symmetric, positive semi-definite) and the rows a commit adds against the pool's N by the
  service, on the decoded arrays, before it does any work with them or stores them.

The engine checks its own inputs again and answers ``ValueError`` (its contract for direct
callers).

Value range: features, pool rows and target means must satisfy ``|x| <= max_feature_abs``
(``DISTREWARD_MAX_FEATURE_ABS``, default 1e6), target covariances
``|sigma_ij| <= max_feature_abs**2``.
With the default, squares are at most 1e12, and a Gram sum over N = 1e6 rows of d = 4096 features
(and its trace) at most 4.1e21: far from float64's 1.8e308, so no sum, covariance or FD can
overflow. Real feature spaces sit well inside (Inception pool3 values are below about 30).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import BadInput, PayloadTooLarge
from .settings import Settings

__all__ = ["ArraySpec", "Limits"]


@dataclass(frozen=True)
class ArraySpec:
    """An array a request carries: its name in messages, its dimensions, the maxima of its
    leading axes (None: unbounded) and the rows its first axis needs at least (a covariance
    needs two)."""

    what: str
    ndim: int
    maxima: tuple[int | None, ...] = ()
    min_rows: int = 1


class Limits:
    """The request limits of one service (from its settings)."""

    def __init__(self, settings: Settings) -> None:
        self.max_abs = settings.max_feature_abs
        self.psd_tolerance = settings.sigma_psd_tolerance
        # No array with more elements fits a body: float16, the narrowest, takes 2 bytes each
        # (a JSON number at least 2 characters).
        self.max_elements = settings.max_body_bytes // 2
        self.groups = ArraySpec("groups", 3, (settings.max_groups, settings.max_group_size))
        self.samples = ArraySpec("samples", 2, (settings.max_samples,))
        self.mu = ArraySpec("mu", 1)
        self.sigma = ArraySpec("sigma", 2)
        # Feature rows (n, d). A covariance needs two rows: features to fit or to measure.
        self.target_features = self.rows("features", min_rows=2)
        self.fd_features = self.rows("features", min_rows=2)
        self.pool_rows = self.rows("pool rows")
        self.commit_rows = self.rows("commit rows")

    @staticmethod
    def rows(what: str, min_rows: int = 1) -> ArraySpec:
        """Feature rows (n, d) of at least ``min_rows`` rows."""
        return ArraySpec(what, 2, min_rows=min_rows)

    def check_shape(
        self, spec: ArraySpec, shape: tuple[int, ...], width: int | None = None
    ) -> None:
        """Dimensions, sizes (no negative or empty axis, no more elements than a body holds;
        computed on Python integers, so a crafted shape cannot overflow) and the width ``d``
        when the reference's is known."""
        what = spec.what
        if any(size < 0 for size in shape):
            raise BadInput(f"{what}: shape {shape} has a negative dimension")
        if 0 in shape:
            raise BadInput(f"{what}: empty array (shape {shape}); send at least one row")
        if len(shape) != spec.ndim:
            raise BadInput(f"{what}: expected {spec.ndim} dimensions, got shape {shape}")
        if shape[0] < spec.min_rows:
            raise BadInput(f"{what}: {shape[0]} row(s); send at least {spec.min_rows}")
        if math.prod(shape) > self.max_elements:  # only a header can claim this: the body
            raise BadInput(  # itself was refused by its length before
                f"{what}: shape {shape} holds more values than a body within the size limit "
                "can; the .npy header does not describe the body"
            )
        for size, maximum in zip(shape, spec.maxima, strict=False):  # maxima: leading axes
            if maximum is not None and size > maximum:
                raise PayloadTooLarge(
                    f"{what}: shape {shape} exceeds the limit of {maximum} along an axis; "
                    "split the request",
                    reason="shape",
                )
        if width is not None:
            self.check_width(what, shape, width)

    @staticmethod
    def check_width(what: str, shape: tuple[int, ...], width: int) -> None:
        """The width ``d`` of feature rows against the reference's."""
        if shape[-1] != width:
            raise BadInput(f"{what} have d={shape[-1]} but the reference has d={width}")

    def check_values(self, what: str, array: np.ndarray, bound: float | None = None) -> None:
        """Finite values within ``bound`` (default ``max_feature_abs``)."""
        bound = self.max_abs if bound is None else bound
        finite = np.isfinite(array)
        if not finite.all():
            bad = int(array.size - finite.sum())
            raise BadInput(f"{what}: {bad} NaN or Inf value(s); send finite numbers")
        largest = float(np.abs(array).max())
        if largest > bound:
            raise BadInput(
                f"{what}: a value of magnitude {largest:.3g} exceeds the limit of {bound:.3g} "
                "(DISTREWARD_MAX_FEATURE_ABS); rescale the features"
            )

    @staticmethod
    def check_fits_pool(rows: int, n: int, what: str) -> None:
        if rows > n:
            raise BadInput(f"{rows} {what} exceed the pool size N={n}")

    def check_target(self, mu: np.ndarray, sigma: np.ndarray) -> None:
        """Target statistics a Gaussian can have, of mu and sigma whose shapes were checked where
        they were read (``mu``, ``sigma``): sigma (d, d) for mu's d, both finite and within the
        value range, sigma symmetric and positive semi-definite: its smallest eigenvalue at
        least ``-sigma_psd_tolerance`` times its largest (rounding in a fitted covariance stays
        far inside 1e-9; a negative variance does not). O(d^3): run it off the event loop."""
        d = len(mu)
        if sigma.shape != (d, d):
            raise BadInput(f"sigma has shape {sigma.shape}; expected ({d}, {d}) for mu")
        self.check_values("mu", mu)
        self.check_values("sigma", sigma, self.max_abs**2)
        scale = max(float(np.abs(sigma).max()), 1e-300)
        if not np.allclose(sigma, sigma.T, rtol=0.0, atol=1e-8 * scale):
            raise BadInput("sigma is not symmetric; send a covariance matrix")
        eigenvalues = np.linalg.eigvalsh(np.asarray(sigma, dtype=np.float64))
        lowest, highest = float(eigenvalues[0]), float(eigenvalues[-1])
        if lowest < -self.psd_tolerance * max(highest, 0.0):
            raise BadInput(
                f"sigma is not positive semi-definite (eigenvalues from {lowest:.3g} to "
                f"{highest:.3g}); send a covariance matrix"
            )
