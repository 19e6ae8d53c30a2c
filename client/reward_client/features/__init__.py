"""Images to features with provenance: extractors, feature spaces, reference statistics.

Install with the ``features`` extra (torch, pytorch-fid, timm, pillow, tqdm). Weights are never
downloaded: every extractor takes a local file and refuses it unless its SHA-256 matches::

    from reward_client.features import inception_extractor, quantize

    extract = inception_extractor("weights/pt_inception-2015-12-05-6726825d.pth")
    features = extract(quantize(samples))          # (B, 2048) float32, samples in [-1, 1]
    extract.feature_space.id  # 'fid-inception-v3/pool3@sha256:6726825d0af5f729/rgb-u8,...'

Extractors: `inception_extractor` (pytorch-fid's FID Inception-v3), `dinov2_extractor` (EDM2's
FD_DINOv2 network), `module_extractor` (any module, e.g. the digits CNN). Reference statistics
from images: `compute_reference` or ``python -m reward_client.features.build_reference``.

Importing this package needs numpy only; the names that need torch load on first use. Errors::

    FeatureError                  anything this package raises on purpose
    ├── WeightsError              a weights file that cannot be used
    │   ├── WeightsNotFound         no file at the path (the message names the official URL)
    │   └── WeightsHashMismatch     SHA-256 differs from the expected one (ditto)
    ├── ImageError                images of the wrong dtype or shape, or NaN (a ValueError too)
    └── FeatureSpaceMismatch      features of two feature spaces met (e.g. resuming shards)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._errors import (
    FeatureError,
    FeatureSpaceMismatch,
    ImageError,
    WeightsError,
    WeightsHashMismatch,
    WeightsNotFound,
)
from ._images import IMAGE_EXTENSIONS, ImageSource, open_images
from ._space import UNKNOWN_FEATURE_SPACE, FeatureSpace
from ._stats import ReferenceStats, StatsAccumulator, load_stats, save_stats
from ._weights import sha256_file, verify_weights

if TYPE_CHECKING:
    from ._extractor import (
        FeatureExtractor,
        module_extractor,
        quantize,
        state_dict_sha256,
    )
    from ._reference import BuiltReference, compute_reference, upload_reference
    from .dinov2 import DINOV2_VITL14_SHA256, DINOV2_VITL14_URL, dinov2_extractor
    from .inception import FID_INCEPTION_SHA256, FID_INCEPTION_URL, inception_extractor

# Names whose modules import torch, loaded on first access (PEP 562).
_LAZY = {
    "FeatureExtractor": "._extractor",
    "module_extractor": "._extractor",
    "quantize": "._extractor",
    "state_dict_sha256": "._extractor",
    "BuiltReference": "._reference",
    "compute_reference": "._reference",
    "upload_reference": "._reference",
    "DINOV2_VITL14_SHA256": ".dinov2",
    "DINOV2_VITL14_URL": ".dinov2",
    "dinov2_extractor": ".dinov2",
    "FID_INCEPTION_SHA256": ".inception",
    "FID_INCEPTION_URL": ".inception",
    "inception_extractor": ".inception",
}

__all__ = [
    "DINOV2_VITL14_SHA256",
    "DINOV2_VITL14_URL",
    "FID_INCEPTION_SHA256",
    "FID_INCEPTION_URL",
    "IMAGE_EXTENSIONS",
    "UNKNOWN_FEATURE_SPACE",
    "BuiltReference",
    "FeatureError",
    "FeatureExtractor",
    "FeatureSpace",
    "FeatureSpaceMismatch",
    "ImageError",
    "ImageSource",
    "ReferenceStats",
    "StatsAccumulator",
    "WeightsError",
    "WeightsHashMismatch",
    "WeightsNotFound",
    "compute_reference",
    "dinov2_extractor",
    "inception_extractor",
    "load_stats",
    "module_extractor",
    "open_images",
    "quantize",
    "save_stats",
    "sha256_file",
    "state_dict_sha256",
    "upload_reference",
    "verify_weights",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
