"""The two networks of the demo: the feature CNN and the flow-matching velocity model."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureCNN", "VelocityMLP"]


class FeatureCNN(nn.Module):
    """Digit classifier whose penultimate layer (``width`` units) is the feature space.

    conv 3x3 (32) → conv 3x3 (64) → pool → conv 3x3 (64) → pool → linear (width, SiLU) → linear
    (10). SiLU rather than ReLU on the features keeps their covariance full rank.
    """

    def __init__(self, width: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, width),
            nn.SiLU(),
        )
        self.head = nn.Linear(width, classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, width) of images (B, 1, 8, 8) in [-1, 1]."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (B, 10)."""
        return self.head(self.features(images))


class VelocityMLP(nn.Module):
    """Velocity field ``v(x, t)`` of a flow-matching model on flattened 8x8 images.

    The time enters through sinusoidal features ``[sin(2^j pi t), cos(2^j pi t)]`` concatenated
    with the pixels; ``depth`` SiLU layers of ``width`` units follow. With ``classes > 0`` the
    model is class-conditional, ``v(x, t, y)``: a one-hot code of the digit class ``y`` is
    concatenated too.
    """

    freqs: torch.Tensor

    def __init__(
        self, dim: int = 64, width: int = 256, depth: int = 3, freqs: int = 8, classes: int = 0
    ) -> None:
        super().__init__()
        self.classes = classes
        self.register_buffer(
            "freqs", (2.0 ** torch.arange(freqs, dtype=torch.float32)) * math.pi, persistent=False
        )
        layers: list[nn.Module] = []
        size = dim + 2 * freqs + classes
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.SiLU()]
            size = width
        layers.append(nn.Linear(size, dim))
        self.net = nn.Sequential(*layers)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Velocity shaped like ``x`` (B, ...) at times ``t`` (B,) (and classes ``labels``
        (B,), which a conditional model needs and an unconditional one refuses)."""
        if (labels is None) != (self.classes == 0):
            given = "no labels" if labels is None else "labels"
            raise ValueError(f"a model of {self.classes} classes was given {given}")
        angles = t[:, None] * self.freqs
        parts = [x.flatten(1), angles.sin(), angles.cos()]
        if labels is not None:
            parts.append(F.one_hot(labels, self.classes).to(x.dtype))
        return self.net(torch.cat(parts, dim=1)).reshape(x.shape)
