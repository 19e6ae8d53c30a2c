"""The base networks (cached) and the feature sets built from them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reward_client.training.sde import sample_sde

from . import data
from .config import DemoConfig
from .evaluation import fixed_noise
from .models import FeatureCNN, VelocityMLP
from .pretrain import FlowConfig, cache_dir, cached, train_classifier, train_flow

__all__ = ["Base", "base_flow", "feature_cnn", "flow_config", "load_base"]

ACCURACY = "accuracy.json"


@dataclass
class Base:
    """Frozen feature CNN, base flow model, and the real-digit features (1797, d) float64."""

    cnn: FeatureCNN
    flow: VelocityMLP
    accuracy: float
    real_features: np.ndarray

    @torch.no_grad()
    def pool(self, config: DemoConfig) -> np.ndarray:
        """Features (pool_size, d) of base-model samples from the training sampler (the SDE);
        a conditional model's pool holds every class equally often."""
        noise = fixed_noise(config.pool_size, config.pool_seed)
        generator = torch.Generator().manual_seed(config.pool_seed)
        labels = data.balanced_labels(config.pool_size, config.classes)
        samples = sample_sde(self.flow, noise, config.worker.sde, generator, labels).samples
        return self.cnn.features(samples).double().numpy()


def feature_cnn(config: DemoConfig) -> FeatureCNN:
    """The feature CNN from ``config.cache``, trained (and cached) first if missing."""
    images, labels = data.load()

    def fit(model: FeatureCNN, out: Path) -> None:
        accuracy = train_classifier(model, images, labels, config.classifier)
        (out / ACCURACY).write_text(json.dumps({"heldout_accuracy": accuracy}))

    return cached(
        _cnn_dir(config), lambda: FeatureCNN(config.classifier.width), fit, config.classifier.seed
    )


def base_flow(config: DemoConfig) -> VelocityMLP:
    """The base flow model from ``config.cache``, trained (and cached) first if missing;
    class-conditional when ``config.classes`` is not 0."""
    images, labels = data.load()
    flow = flow_config(config)
    return cached(
        cache_dir(config.cache, "flow", flow),
        lambda: VelocityMLP(width=flow.width, depth=flow.depth, classes=flow.classes),
        lambda model, out: train_flow(model, images, labels, flow, out),
        flow.seed,
    )


def flow_config(config: DemoConfig) -> FlowConfig:
    """The flow's training settings, with the demo's number of classes."""
    return dataclasses.replace(config.flow, classes=config.classes)


def _cnn_dir(config: DemoConfig) -> Path:
    return cache_dir(config.cache, "feature-cnn", config.classifier)


def load_base(config: DemoConfig) -> Base:
    """Both base networks (see :func:`feature_cnn`, :func:`base_flow`) and the real features."""
    cnn = feature_cnn(config)
    accuracy = json.loads((_cnn_dir(config) / ACCURACY).read_text())["heldout_accuracy"]
    images, _ = data.load()
    with torch.no_grad():
        real = cnn.features(images).double().numpy()
    return Base(cnn=cnn, flow=base_flow(config), accuracy=accuracy, real_features=real)
