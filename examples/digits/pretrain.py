"""Training of the base networks, cached under a directory keyed by a hash of their settings.

* :func:`train_classifier` — the feature CNN, cross-entropy with one-pixel random shifts.
* :func:`train_flow` — the base generator, conditional flow matching: with ``x0 ~ N(0, I)``,
  data ``x1``, ``t ~ U(0, 1)`` and ``x_t = (1 - t) x0 + t x1``, minimise
  ``E |v(x_t, t) - (x1 - x0)|^2`` (with ``classes > 0``: ``v(x_t, t, y)``, y the digit's
  label); an exponential moving average of the weights is the base model and raw snapshots
  along training are kept (``snapshots/``) for checkpoint merging.

:func:`cached` returns the trained module from ``<cache>/<kind>-<hash>/model.pt`` when present.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from .models import FeatureCNN, VelocityMLP

__all__ = [
    "ClassifierConfig",
    "FlowConfig",
    "cache_dir",
    "cached",
    "train_classifier",
    "train_flow",
]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class ClassifierConfig:
    """Feature CNN: ``width`` features, Adam for ``epochs`` over all but ``holdout`` images."""

    width: int = 64
    epochs: int = 30
    batch: int = 64
    lr: float = 2e-3
    holdout: int = 297
    seed: int = 0


@dataclass(frozen=True)
class FlowConfig:
    """Flow model: MLP size, Adam ``iters`` steps, EMA ``ema`` decay, ``snapshots`` kept;
    ``classes`` > 0 makes it class-conditional."""

    width: int = 256
    depth: int = 3
    iters: int = 4000
    batch: int = 256
    lr: float = 1e-3
    ema: float = 0.999
    snapshots: int = 8
    seed: int = 0
    classes: int = 0


def cache_dir(root: Path, kind: str, config: object) -> Path:
    """``root/<kind>-<first 12 hex of sha256 of the config as sorted JSON>``."""
    blob = json.dumps({"kind": kind, **asdict(config)}, sort_keys=True).encode()  # type: ignore[call-overload]
    return root / f"{kind}-{hashlib.sha256(blob).hexdigest()[:12]}"


def cached(
    directory: Path, build: Callable[[], M], train: Callable[[M, Path], None], seed: int
) -> M:
    """Load ``directory/model.pt`` into ``build()``, or train it there first.

    ``build()`` runs under ``torch.manual_seed(seed)``, so a cold cache trains the same network
    from the same initial weights on every machine.
    """
    torch.manual_seed(seed)
    model = build()
    path = directory / "model.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        log.info("loaded %s", path)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        train(model, directory)
        # Rename into place: processes racing on a cold cache never read a partial file.
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
        log.info("trained and saved %s", path)
    return model.eval().requires_grad_(False)


def _shift(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to one pixel per axis (zero-padding is -1 = blank)."""
    padded = F.pad(images, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()
    return padded[..., dy : dy + 8, dx : dx + 8]


def train_classifier(
    model: FeatureCNN, images: torch.Tensor, labels: torch.Tensor, config: ClassifierConfig
) -> float:
    """Train in place; returns the held-out accuracy (images are shuffled with ``seed``)."""
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(images), generator=generator)
    test, train = order[: config.holdout], order[config.holdout :]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, config.epochs * -(-len(train) // config.batch)
    )
    model.train()
    for _ in range(config.epochs):
        for idx in train[torch.randperm(len(train), generator=generator)].split(config.batch):
            loss = F.cross_entropy(model(_shift(images[idx], generator)), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images[test]).argmax(1) == labels[test]).float().mean().item()
    log.info("feature CNN held-out accuracy %.3f", accuracy)
    return accuracy


def train_flow(
    model: VelocityMLP, images: torch.Tensor, labels: torch.Tensor, config: FlowConfig, out: Path
) -> None:
    """Flow matching in place; ``model`` ends as the EMA weights, snapshots go to ``out``.
    ``labels`` condition a class-conditional model (``config.classes > 0``)."""
    generator = torch.Generator().manual_seed(config.seed)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.iters)
    every = max(1, config.iters // config.snapshots)
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    for it in range(1, config.iters + 1):
        idx = torch.randint(0, len(images), (config.batch,), generator=generator)
        x1, y = images[idx], labels[idx] if config.classes else None
        x0 = torch.randn(x1.shape, generator=generator)
        t = torch.rand(config.batch, generator=generator)
        tb = t[:, None, None, None]
        loss = F.mse_loss(model((1 - tb) * x0 + tb * x1, t, y), x1 - x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                p_ema.lerp_(p, 1 - config.ema)
        if it % every == 0:
            torch.save(model.state_dict(), out / "snapshots" / f"iter{it:06d}.pt")
    model.load_state_dict(ema.state_dict())
    log.info("flow model trained, last loss %.4f", loss.item())
