"""Errors of `reward_client.features` (the tree is drawn in the package docstring)."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "FeatureError",
    "FeatureSpaceMismatch",
    "ImageError",
    "WeightsError",
    "WeightsHashMismatch",
    "WeightsNotFound",
]


class FeatureError(Exception):
    """Anything `reward_client.features` raises on purpose."""


class WeightsError(FeatureError):
    """A weights file cannot be used: missing, or not the file the feature space names."""


class WeightsNotFound(WeightsError):
    """The weights path does not name a readable file."""

    def __init__(self, path: Path, what: str, url: str | None) -> None:
        self.path = path
        where = f"; the official file is published at {url}" if url else ""
        super().__init__(
            f"{what} weights not found at {path}{where} (download it yourself: nothing is "
            "downloaded at run time)"
        )


class WeightsHashMismatch(WeightsError):
    """The weights file's SHA-256 differs from the one expected."""

    def __init__(
        self, path: Path | str, what: str, expected: str, actual: str, url: str | None
    ) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        where = f"; the official file is published at {url}" if url else ""
        super().__init__(
            f"{what} weights at {path} have SHA-256 {actual}, expected {expected}{where}"
        )


class ImageError(FeatureError, ValueError):
    """Images an extractor cannot take as they are (dtype, shape, NaN)."""


class FeatureSpaceMismatch(FeatureError):
    """Features or shards of one feature space met another (e.g. resuming with other weights)."""
