"""``--setup examples.digits.trainer_setup:build`` for ``python -m reward_client.grpo.train``.

Fine-tunes the unconditional demo's base flow model in the feature space of its CNN (both from
the demo's cache, trained on first use). The reference named on the command line must exist on
the service, e.g. ``digits-base`` as ``python -m examples.digits --unconditional`` uploads it.
"""

from __future__ import annotations

import copy

from reward_client.grpo.worker import TrainSetup

from .base import load_base
from .config import DemoConfig
from .data import SHAPE
from .features import cnn_extractor

__all__ = ["build"]


def build() -> TrainSetup:
    """The base flow (trainable copy), the CNN feature map (an extractor: the trainer's client
    names its feature space) and the 8x8 sample shape."""
    base = load_base(DemoConfig().unconditional())
    policy = copy.deepcopy(base.flow).requires_grad_(True)
    return TrainSetup(policy=policy, featurize=cnn_extractor(base.cnn), sample_shape=SHAPE)
