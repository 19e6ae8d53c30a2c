"""Images -> reference statistics and an initial pool, in resumable shards.

Layout of the output directory::

    manifest.json          feature space, source (path, count, fingerprint), shard size
    shards/shard-000000.npy  features (rows, d) float32 of images [0, shard_size), ...
    stats.npz              mu, sigma (float64) and feature_space: pytorch-fid's format
    pool.npy               features (N, d) float32: all rows, or a seeded sample of pool_size

A shard is written under a temporary name and renamed into place, so a finished shard is always
whole; a rerun with the same manifest skips finished shards and computes only the rest. The
statistics are accumulated from the shards in float64 (`StatsAccumulator`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm.auto import tqdm

from .. import ReferenceInfo, RewardClient
from ._errors import FeatureSpaceMismatch
from ._extractor import FeatureExtractor
from ._images import ImageSource, UInt8Images
from ._stats import ReferenceStats, StatsAccumulator, load_stats, save_stats

__all__ = ["BuiltReference", "compute_reference", "upload_reference"]

MANIFEST = "manifest.json"
STATS = "stats.npz"
POOL = "pool.npy"


@dataclass(frozen=True)
class BuiltReference:
    """What `compute_reference` wrote: the statistics, the pool, and how much it computed."""

    stats_path: Path
    pool_path: Path
    stats: ReferenceStats
    count: int
    computed: int
    """Images whose features this run computed (the others came from finished shards)."""


def compute_reference(
    source: ImageSource,
    extractor: FeatureExtractor,
    out: str | Path,
    *,
    batch_size: int = 50,
    shard_size: int = 5000,
    pool_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> BuiltReference:
    """Features of every image of ``source`` in ``extractor``'s space, their statistics
    (``out/stats.npz``) and an initial pool (``out/pool.npy``); resumes an interrupted run."""
    if batch_size < 1 or shard_size < 1:
        raise ValueError("batch_size and shard_size must be >= 1")
    count = len(source)
    if pool_size is not None and not 1 <= pool_size <= count:
        raise ValueError(f"pool_size must be in [1, {count}], got {pool_size}")
    directory = Path(out)
    shards = directory / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    _check_manifest(directory / MANIFEST, extractor, source, shard_size)

    starts = range(0, count, shard_size)
    todo = [
        s
        for s in starts
        if not _finished(_shard_path(shards, s, shard_size), s, count, shard_size, extractor.dim)
    ]
    computed = sum(min(s + shard_size, count) - s for s in todo)
    with tqdm(
        total=count,
        initial=count - computed,
        unit="img",
        desc=extractor.feature_space.name,
        disable=not progress,
    ) as bar:
        for start in todo:
            stop = min(start + shard_size, count)
            rows = [
                _features(extractor, source.read(b, min(b + batch_size, stop)), bar)
                for b in range(start, stop, batch_size)
            ]
            _save_atomic(_shard_path(shards, start, shard_size), np.concatenate(rows))

    accumulator = StatsAccumulator(extractor.dim)
    for start in starts:
        accumulator.update(np.load(_shard_path(shards, start, shard_size)))
    mu, sigma = accumulator.result()
    stats_path = save_stats(directory / STATS, mu, sigma, extractor.feature_space)
    pool = _pool(shards, starts, shard_size, count, pool_size, seed)
    pool_path = directory / POOL
    _save_atomic(pool_path, pool)
    return BuiltReference(stats_path, pool_path, load_stats(stats_path), count, computed)


def upload_reference(
    client: RewardClient,
    built: BuiltReference,
    *,
    target: str | None = None,
    pool: str | None = None,
) -> list[ReferenceInfo]:
    """Put ``built``'s statistics as the target of reference ``target`` (creating it) and its
    pool as the pool of reference ``pool``; either may be omitted. Admin token needed.

    Both go with their feature space: a new reference records the statistics' space, and the
    service refuses (409, `Conflict`) a target or pool for a reference of another space. The
    target comes from the real data and the pool from the model's samples, so the two usually
    come from two runs.
    """
    space = built.stats.feature_space
    infos = []
    if target is not None:
        infos.append(client.put_target(target, stats=built.stats_path, feature_space=space))
    if pool is not None:
        infos.append(client.put_pool(pool, np.load(built.pool_path), feature_space=space))
    return infos


def _features(
    extractor: FeatureExtractor, images: list[UInt8Images], bar: Any
) -> npt.NDArray[np.float32]:
    """Features of ``images`` in runs of equal size (a folder may mix sizes; a batch cannot)."""
    out = []
    run_start = 0
    for i in range(1, len(images) + 1):
        if i == len(images) or images[i].shape != images[run_start].shape:
            batch = np.stack(images[run_start:i]).transpose(0, 3, 1, 2)
            features = extractor(torch.from_numpy(np.ascontiguousarray(batch)))
            out.append(features.cpu().numpy().astype(np.float32, copy=False))
            bar.update(i - run_start)
            run_start = i
    return np.concatenate(out)


def _check_manifest(
    path: Path, extractor: FeatureExtractor, source: ImageSource, shard_size: int
) -> None:
    """Write the manifest of a fresh run, or refuse to resume a different one into the same
    directory (shards of two feature spaces must never meet)."""
    manifest = {
        "feature_space": extractor.feature_space.id,
        "dim": extractor.dim,
        "source": source.describe(),
        "shard_size": shard_size,
    }
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("feature_space") != manifest["feature_space"]:
            raise FeatureSpaceMismatch(
                f"{path.parent} holds features of {previous.get('feature_space')}, not "
                f"{manifest['feature_space']}: use another output directory"
            )
        if previous != manifest:
            raise ValueError(
                f"{path.parent} was started with {previous}, not {manifest}: resume with the same "
                "source and shard size, or use another output directory"
            )
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path)


def _shard_path(shards: Path, start: int, shard_size: int) -> Path:
    return shards / f"shard-{start // shard_size:06d}.npy"


def _finished(path: Path, start: int, count: int, shard_size: int, dim: int) -> bool:
    if not path.exists():
        return False
    rows = np.load(path, mmap_mode="r")
    return bool(rows.shape == (min(start + shard_size, count) - start, dim))


def _save_atomic(path: Path, array: npt.NDArray[Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _pool(
    shards: Path, starts: range, shard_size: int, count: int, pool_size: int | None, seed: int
) -> npt.NDArray[np.float32]:
    features = np.concatenate([np.load(_shard_path(shards, s, shard_size)) for s in starts])
    if pool_size is None:
        return features
    rows = np.sort(np.random.default_rng(seed).choice(count, size=pool_size, replace=False))
    return features[rows]
