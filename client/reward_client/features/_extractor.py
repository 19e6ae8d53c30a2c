"""The extractor interface, the shared image conversions, and extractors around any module."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ._errors import FeatureError, ImageError, WeightsHashMismatch
from ._space import FeatureSpace

__all__ = [
    "FeatureExtractor",
    "Images",
    "module_extractor",
    "quantize",
    "rgb_uint8",
    "state_dict_sha256",
]

Images = torch.Tensor | np.ndarray[Any, Any]


class FeatureExtractor:
    """A callable ``images -> features`` (B, d) float32 in one `FeatureSpace`.

    ``preprocess`` maps the raw batch (what ``__call__`` accepts: uint8 RGB (B, 3, H, W) for the
    standard extractors, whatever the module expects for `module_extractor`) to the network's
    input; ``forward`` maps that input to features. Both are fixed at construction: the
    preprocessing is part of the feature space, named in ``feature_space.preprocess``.
    """

    def __init__(
        self,
        network: nn.Module,
        preprocess: Callable[[torch.Tensor], torch.Tensor],
        feature_space: FeatureSpace,
        *,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.network = network.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.feature_space = feature_space
        self._forward = forward if forward is not None else self.network
        self.device = torch.device("cpu")
        if device is not None:
            self.to(device)

    @property
    def dim(self) -> int:
        """Features per image."""
        return self.feature_space.dim

    def to(self, device: torch.device | str) -> FeatureExtractor:
        """Move the network to ``device``; images are moved there on each call."""
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    def __call__(self, images: Images) -> torch.Tensor:
        """Features (B, d) float32, on ``self.device``, of a batch of B images."""
        batch = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
        with torch.no_grad():
            features = self._forward(self.preprocess(batch.to(self.device)))
        expected = (batch.shape[0], self.dim)
        if tuple(features.shape) != expected:
            raise FeatureError(
                f"{self.feature_space.name} produced features of shape {tuple(features.shape)}, "
                f"expected {expected}"
            )
        return features.float()

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.feature_space.id!r}, device={str(self.device)!r})"


def rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, 3, H, W) or grey (B, 1, H, W) as float32 RGB in 0..255.

    Grey images get their channel repeated, which is what PIL's ``convert("RGB")`` does, so a grey
    PNG and the same array passed directly give the same features.
    """
    if images.dtype != torch.uint8:
        raise ImageError(
            f"images must be uint8 (got {images.dtype}): quantise generated images first, e.g. "
            "with reward_client.features.quantize, exactly as saving them to PNG would"
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise FeatureError(
            f"images must be (B, 3, H, W) or (B, 1, H, W), got {tuple(images.shape)}"
        )
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    return rgb.to(torch.float32)


def quantize(images: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Float images with values in ``[low, high]`` as uint8, rounded as saving a PNG rounds.

    ``floor((x - low) / (high - low) * 255 + 0.5)`` clipped to 0..255: torchvision's
    ``save_image`` for ``[0, 1]`` and EDM2's ``x * 127.5 + 128`` for ``[-1, 1]``.
    """
    if high <= low:
        raise ValueError(f"need low < high, got [{low}, {high}]")
    if not torch.isfinite(images).all():
        raise ImageError("images contain NaN or Inf")
    scaled = (images.to(torch.float32) - low) * (255.0 / (high - low)) + 0.5
    return scaled.floor().clamp(0, 255).to(torch.uint8)


def state_dict_sha256(network: nn.Module) -> str:
    """SHA-256 of a module's weights: every state-dict entry's name, dtype, shape and bytes, in
    name order, so the same weights hash the same whichever file or process they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def module_extractor(
    network: nn.Module,
    *,
    name: str,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    preprocess_id: str,
    dim: int,
    sha256: str | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
) -> FeatureExtractor:
    """An extractor around a user's module with its weights loaded (e.g. the digits CNN).

    The feature space's weights hash is `state_dict_sha256` of ``network``; when ``sha256`` is
    given, a module whose weights hash differently is refused. ``preprocess_id`` names what
    ``preprocess`` does (it becomes part of the identifier); ``forward`` picks the features when
    they are not ``network(x)`` (e.g. ``cnn.features``).
    """
    actual = state_dict_sha256(network)
    if sha256 is not None and sha256.lower() != actual:
        module = f"<module {type(network).__module__}.{type(network).__qualname__}>"
        raise WeightsHashMismatch(module, name, sha256.lower(), actual, None)
    space = FeatureSpace(name=name, weights_sha256=actual, preprocess=preprocess_id, dim=dim)
    return FeatureExtractor(network, preprocess, space, forward=forward, device=device)
