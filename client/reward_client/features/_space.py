"""Feature spaces: which network, which weights and which preprocessing made a feature vector.

Fréchet distances are only comparable inside one feature space: the same network with the same
weights fed the same way (the clean-fid paper shows the resize filter and the quantisation alone
move FID by several points). A `FeatureSpace` names all three in one identifier string, stable
across runs and machines, that stats files and (later) service requests carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["UNKNOWN_FEATURE_SPACE", "FeatureSpace"]

# What statistics written by other tools (pytorch-fid, ADM, EDM) load as: they record no space.
UNKNOWN_FEATURE_SPACE = "unknown"

# Digits of the weights hash kept in the identifier: 64 bits tell weights files apart; the full
# hash stays on the `FeatureSpace` for anyone who wants to check a file.
_ID_HASH_DIGITS = 16
_NAME = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
# No "/" or "@": the identifier splits at them. No spaces: it travels in query strings.
_PREPROCESS = re.compile(r"[A-Za-z0-9._,=:+-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FeatureSpace:
    """A network (``name``), its weights (``weights_sha256``, the SHA-256 of the weights file or
    of the state dict) and its preprocessing (``preprocess``, e.g. ``rgb-u8,resize=bilinear-299``),
    producing ``dim`` features per image.

    ``id`` is ``name@sha256:<first 16 hex digits>/preprocess``, e.g.
    ``fid-inception-v3/pool3@sha256:6726825d0af5f729/rgb-u8,resize=bilinear-299,range=-1..1``.
    """

    name: str
    weights_sha256: str
    preprocess: str
    dim: int

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"feature space name {self.name!r}: use letters, digits and . _ - (parts joined "
                "by /)"
            )
        if not _SHA256.fullmatch(self.weights_sha256):
            raise ValueError(
                f"weights_sha256 {self.weights_sha256!r} is not 64 lower-case hex digits"
            )
        if not _PREPROCESS.fullmatch(self.preprocess):
            raise ValueError(
                f"preprocess {self.preprocess!r}: use letters, digits and . _ , = : + - only"
            )
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")

    @property
    def id(self) -> str:
        """The identifier stats files and requests carry."""
        return f"{self.name}@sha256:{self.weights_sha256[:_ID_HASH_DIGITS]}/{self.preprocess}"

    def __str__(self) -> str:
        return self.id
