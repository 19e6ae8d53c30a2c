"""Pieces of the digits demo with closed-form answers: metrics, cache keys, data scaling."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.digits import data
from examples.digits.metrics import class_entropy, coverage
from examples.digits.pretrain import ClassifierConfig, FlowConfig, cache_dir


def test_class_entropy_closed_forms() -> None:
    uniform = torch.eye(10).repeat(3, 1)  # every class predicted equally often
    assert class_entropy(uniform) == pytest.approx(math.log(10))
    one_class = torch.zeros(7, 10)
    one_class[:, 4] = 1.0
    assert class_entropy(one_class) == 0.0
    halves = torch.eye(10)[[0, 0, 1, 1]]
    assert class_entropy(halves) == pytest.approx(math.log(2))


def test_coverage_extremes_and_a_hand_count() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 3))
    assert coverage(real, real + 1e-9) == 1.0
    assert coverage(real, real + 100.0) == 0.0
    # 1-d: reals at 0, 1, ..., 9; k = 1 radius is 1 for every point (strict inequality).
    line = np.arange(10, dtype=np.float64)[:, None]
    assert coverage(line, np.array([[0.5]]), k=1) == pytest.approx(0.2)  # covers 0 and 1
    assert coverage(line, np.array([[0.0], [9.0]]), k=1) == pytest.approx(0.2)


def test_cache_keys_follow_the_config() -> None:
    root = Path("cache")
    assert cache_dir(root, "flow", FlowConfig()) == cache_dir(root, "flow", FlowConfig())
    assert cache_dir(root, "flow", FlowConfig()) != cache_dir(root, "flow", FlowConfig(iters=1))
    assert cache_dir(root, "cnn", ClassifierConfig()).name.startswith("cnn-")


def test_digits_are_scaled_to_the_unit_interval_and_back() -> None:
    images, labels = data.load()
    assert images.shape == (1797, *data.SHAPE)
    assert float(images.min()) == -1.0 and float(images.max()) == 1.0
    assert set(labels.tolist()) == set(range(10))
    pixels = data.to_pixels(images[:5].numpy())
    assert pixels.shape == (5, 8, 8) and pixels.min() >= 0.0 and pixels.max() <= 1.0
