"""What the weights fixtures of tests/client/features yield."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Weights:
    """A weights file a test wrote, and its SHA-256."""

    path: Path
    sha256: str
