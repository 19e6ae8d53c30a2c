"""End to end: images -> the statistics command -> a reference on a real service, which records
the features' space -> a trainer posts features from the extractor -> rewards; features of
another extractor (the same network and weights fed with another resize filter, the clean-fid
paper's point) are refused with a 409 that names both spaces, and change nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from features_weights import Weights
from PIL import Image

import reward_client as rc
from reward_client.features import (
    FeatureExtractor,
    FeatureSpace,
    inception_extractor,
    load_stats,
)
from reward_client.features._extractor import rgb_uint8
from reward_client.features.build_reference import main as build_reference

if TYPE_CHECKING:
    from examples.digits.service import Endpoint

DIMS = 64  # Inception's first block: the same code path as pool3, at a test's cost
NAME = "e2e-images"


def _pngs(folder: Path, count: int, seed: int, shift: float) -> np.ndarray:
    """``count`` 16 x 16 RGB PNGs of smooth blobs (brightness ``shift``) -> their pixels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    grid = np.linspace(0, 1, 16)
    pixels = []
    for i in range(count):
        centre = rng.random(2)
        blob = np.exp(-((grid[:, None] - centre[0]) ** 2 + (grid[None, :] - centre[1]) ** 2) * 8)
        image = (blob[..., None] * rng.random(3) + shift) * 200 + rng.normal(0, 15, (16, 16, 3))
        pixels.append(np.clip(image, 0, 255).astype(np.uint8))
        Image.fromarray(pixels[-1]).save(folder / f"{i:03d}.png")
    return np.stack(pixels)


def _bicubic(extract: FeatureExtractor) -> FeatureExtractor:
    """The same network and weights, fed images resized bicubically: another feature space."""

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        unit = rgb_uint8(images) / 255
        return F.interpolate(unit, size=(299, 299), mode="bicubic").clamp(0, 1)

    space = extract.feature_space
    other = FeatureSpace(space.name, space.weights_sha256, "rgb-u8,resize=bicubic-299", DIMS)
    return FeatureExtractor(extract.network, preprocess, other, forward=extract._forward)


def _command(args: list[str], weights: Weights, url: str) -> None:
    fixed = ["--weights", str(weights.path), "--sha256", weights.sha256, "--dims", str(DIMS)]
    status = build_reference([*args, *fixed, "--device", "cpu", "--quiet", "--url", url])
    assert status == 0


def test_images_to_rewards_and_another_extractor_is_refused(
    fid_weights: Weights, service: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTREWARD_TOKEN", service.token)  # the command uploads as admin
    _pngs(tmp_path / "real", 48, seed=0, shift=0.2)
    _pngs(tmp_path / "base", 32, seed=1, shift=0.0)
    # The target from the real images, the initial pool from the base model's samples.
    _command([str(tmp_path / "real"), str(tmp_path / "ref"), "--upload-target", NAME],
             fid_weights, service.url)  # fmt: skip
    _command([str(tmp_path / "base"), str(tmp_path / "pool"), "--upload-pool", NAME],
             fid_weights, service.url)  # fmt: skip
    recorded = load_stats(tmp_path / "ref" / "stats.npz").feature_space

    extract = inception_extractor(
        fid_weights.path, dims=DIMS, expected_sha256=fid_weights.sha256, device="cpu"
    )
    assert extract.feature_space.id == recorded
    samples = torch.from_numpy(_pngs(tmp_path / "samples", 8, seed=2, shift=0.2))
    images = samples.permute(0, 3, 1, 2).contiguous()

    with rc.RewardClient(service.url, token=service.token, feature_space=extract) as trainer:
        info = trainer.info(NAME)
        assert (info.d, info.n, info.feature_space) == (DIMS, 32, recorded)
        batch = trainer.rewards(NAME, extract(images).reshape(2, 4, DIMS), seed=0)
        assert np.isfinite(batch.rewards).all() and batch.version == info.version
        # Closer to the real images than the pool is: the groups move the pool toward them.
        assert (batch.rewards > 0).all()

        other = _bicubic(extract)
        moved = np.abs(other(images).numpy() - extract(images).numpy()).max()
        assert moved > 1e-3  # the resize filter alone changes the features
        with pytest.raises(rc.Conflict) as refused:
            trainer.rewards(NAME, other(images).reshape(2, 4, DIMS), feature_space=other)
        assert recorded in refused.value.detail
        assert other.feature_space.id in refused.value.detail
        with pytest.raises(rc.Conflict):
            trainer.commit(NAME, other(images), feature_space=other)

    # A reward function takes the extractor's space by itself, from a client that names none.
    with rc.RewardClient(service.url, token=service.token) as client:
        assert client.config.feature_space is None
        scores, _ = rc.credit_reward_fn(client, NAME, feature_fn=extract, seed=0)(images)
        assert np.isfinite(scores["avg"]).all()
        with pytest.raises(rc.Conflict, match="bicubic"):
            rc.credit_reward_fn(client, NAME, feature_fn=other, seed=0)(images)
        with pytest.raises(rc.Conflict, match="names no feature space"):
            client.rewards(NAME, extract(images).reshape(2, 4, DIMS))
        after = client.info(NAME)
        client.delete(NAME)
    # Refusals changed nothing; the accepted credits committed their share (one version).
    assert after.version == info.version + 1
