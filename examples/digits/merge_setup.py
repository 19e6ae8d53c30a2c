"""``--setup examples.digits.merge_setup:build`` for ``python -m reward_client.merging.train``.

Learns merge weights of the digits flow's snapshots (``<cache>/flow-*/snapshots/iter*.pt``, read
from disk at every merge) in the feature space of the demo's CNN; both come from the demo's
cache, trained on first use. The reference named on the command line must exist on the service
with the real-digit target and a pool (the merge demo's references live as long as its run).
"""

from __future__ import annotations

from reward_client.merging.merge import Snapshots
from reward_client.merging.trainer import MergeSetup

from .base import load_base
from .config import DemoConfig
from .data import SHAPE
from .features import cnn_extractor
from .models import VelocityMLP
from .pretrain import cache_dir

__all__ = ["build"]


def build() -> MergeSetup:
    """A frozen digits velocity model as the merge buffer, the snapshot files, the CNN features."""
    config = DemoConfig().unconditional()
    base = load_base(config)
    snapshots = cache_dir(config.cache, "flow", config.flow) / "snapshots"
    model = VelocityMLP(width=config.flow.width, depth=config.flow.depth).eval()
    return MergeSetup(
        model=model.requires_grad_(False),
        snapshots=Snapshots.from_dir(snapshots, "iter*.pt"),
        featurize=cnn_extractor(base.cnn),  # the trainer's client names its feature space
        sample_shape=SHAPE,
    )
