"""The demo's feature space: its CNN's penultimate layer, as `reward_client.features` names it.

Every reference the demo creates records this space, and every request that posts the CNN's
features names it, so the service refuses features of another CNN (other weights: another
hash) against the demo's references.
"""

from __future__ import annotations

import torch

from reward_client.features import FeatureExtractor, FeatureSpace, module_extractor

from .models import FeatureCNN

__all__ = ["cnn_extractor", "cnn_feature_space"]


def _as_sampled(images: torch.Tensor) -> torch.Tensor:
    """The CNN takes the generator's samples as they are: (B, 1, 8, 8) in [-1, 1]."""
    return images


def cnn_extractor(cnn: FeatureCNN) -> FeatureExtractor:
    """``cnn.features`` as an extractor whose space names the CNN's weights (their SHA-256)."""
    return module_extractor(
        cnn,
        name="digits-cnn/penultimate",
        preprocess=_as_sampled,
        preprocess_id="grey-8x8,range=-1..1",
        dim=cnn.head.in_features,
        forward=cnn.features,
    )


def cnn_feature_space(cnn: FeatureCNN) -> FeatureSpace:
    """The feature space of ``cnn.features``."""
    return cnn_extractor(cnn).feature_space
