"""The real data: scikit-learn's bundled 8x8 digits (1,797 images, no download)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

__all__ = ["CLASSES", "SHAPE", "balanced_labels", "load", "to_pixels"]

SHAPE = (1, 8, 8)
"""One image: a single channel of 8 x 8 pixels."""

CLASSES = 10
"""The digits 0 to 9."""

_MAX = 16.0  # pixel intensities of the dataset are integers 0..16


def load() -> tuple[torch.Tensor, torch.Tensor]:
    """Images scaled to [-1, 1] as (1797, 1, 8, 8) float32, and labels (1797,) int64."""
    digits = load_digits()
    images = digits.images.astype(np.float32) / (_MAX / 2) - 1.0
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(digits.target).long()


def balanced_labels(count: int, classes: int) -> torch.Tensor | None:
    """Class labels ``i % classes`` of ``count`` samples (every class equally often, up to one),
    or None for an unconditional model (``classes == 0``)."""
    return torch.arange(count) % classes if classes else None


def to_pixels(images: np.ndarray) -> np.ndarray:
    """Map model-space images (B, 1, 8, 8) back to [0, 1] grey levels (B, 8, 8)."""
    return (np.clip(images[:, 0], -1.0, 1.0) + 1.0) / 2.0
