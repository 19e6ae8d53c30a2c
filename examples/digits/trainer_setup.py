"""``--setup examples.digits.trainer_setup:build`` (or ``:build_conditional``) for
``python -m reward_client.grpo.train``.

Fine-tunes the demo's base flow model in the feature space of its CNN (both from the demo's
cache, trained on first use): :func:`build` the unconditional flow, :func:`build_conditional`
the class-conditional one of ``make demo``. The base networks are the demo's defaults in
``out/cache``, or those ``$DIGITS_BASE`` describes (:func:`base_settings`: how the demo hands
its own to the ranks it starts). The reference named on the command line must exist on the
service, e.g. ``digits-base`` as ``python -m examples.digits --unconditional`` uploads it.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict
from pathlib import Path

from reward_client.grpo.worker import TrainSetup

from .base import load_base
from .config import DemoConfig
from .data import SHAPE
from .features import cnn_extractor
from .pretrain import ClassifierConfig, FlowConfig

__all__ = ["BASE_VARIABLE", "base_settings", "build", "build_conditional"]

BASE_VARIABLE = "DIGITS_BASE"
"""The environment variable that describes the base networks (see :func:`base_settings`)."""


def base_settings(config: DemoConfig) -> str:
    """What decides ``config``'s base networks (their cache and training settings), as the JSON
    :data:`BASE_VARIABLE` holds."""
    return json.dumps(
        {
            "cache": str(config.cache.resolve()),
            "classifier": asdict(config.classifier),
            "flow": asdict(config.flow),
        }
    )


def build() -> TrainSetup:
    """The unconditional base flow (trainable copy), the CNN feature map (an extractor: the
    trainer's client names its feature space) and the 8x8 sample shape."""
    return _setup(_config().unconditional())


def build_conditional() -> TrainSetup:
    """:func:`build` for the class-conditional flow of ``make demo`` (10 classes)."""
    return _setup(_config())


def _config() -> DemoConfig:
    given = os.environ.get(BASE_VARIABLE)
    if not given:
        return DemoConfig()
    settings = json.loads(given)
    return DemoConfig(
        cache=Path(settings["cache"]),
        classifier=ClassifierConfig(**settings["classifier"]),
        flow=FlowConfig(**settings["flow"]),
    )


def _setup(config: DemoConfig) -> TrainSetup:
    base = load_base(config)
    policy = copy.deepcopy(base.flow).requires_grad_(True)
    featurize = cnn_extractor(base.cnn)
    return TrainSetup(policy, featurize, SHAPE, classes=config.classes)
