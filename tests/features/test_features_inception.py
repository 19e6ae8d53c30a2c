"""The Inception extractor against pytorch-fid itself, on the same (random) weights file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from features_weights import Weights
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid.inception import InceptionV3

from reward_client.features import (
    FID_INCEPTION_SHA256,
    FID_INCEPTION_URL,
    WeightsHashMismatch,
    WeightsNotFound,
    inception_extractor,
    load_stats,
)
from reward_client.features.build_reference import main as build_reference


def _write_pngs(folder: Path, count: int, size: int, seed: int) -> np.ndarray:
    """``count`` random RGB PNGs (smooth blobs plus noise, so features vary) -> their pixels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.linspace(0, 1, size)
    pixels = []
    for i in range(count):
        centre = rng.random(2)
        blob = np.exp(-((grid[:, None] - centre[0]) ** 2 + (grid[None, :] - centre[1]) ** 2) * 8)
        image = blob[..., None] * rng.random(3) * 255 + rng.normal(0, 20, (size, size, 3))
        array = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"img{i:03d}.png")
        pixels.append(array)
    return np.stack(pixels)


def test_features_equal_pytorch_fid_inception(fid_weights: Weights, pytorch_fid_home: Path) -> None:
    pixels = _write_pngs(Path(pytorch_fid_home).parent / "images", 4, 40, seed=1)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    reference = InceptionV3([3]).eval()  # loads the test's file from TORCH_HOME
    with torch.no_grad():
        expected = reference(images.float() / 255)[0].flatten(1)

    extract = inception_extractor(fid_weights.path, expected_sha256=fid_weights.sha256)
    features = extract(images)

    assert features.dtype == torch.float32
    assert features.shape == (4, 2048)
    assert expected.std(0).mean() > 0.05  # the random network tells the images apart
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-5)
    # Same from a numpy batch and from grey images (PIL's convert("RGB") repeats the channel).
    torch.testing.assert_close(extract(images.numpy()), expected, rtol=0, atol=1e-5)
    grey = images[:2, :1]
    torch.testing.assert_close(extract(grey), extract(grey.expand(-1, 3, -1, -1)), rtol=0, atol=0)


def test_pool3_stats_from_a_folder_equal_pytorch_fids(
    fid_weights: Weights, pytorch_fid_home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "pngs"
    _write_pngs(folder, 8, 32, seed=2)
    mu_ref, sigma_ref = fid_score.calculate_activation_statistics(
        sorted(folder.glob("*.png")),
        InceptionV3([3]).eval(),
        batch_size=8,
        dims=2048,
        num_workers=0,
    )
    status = build_reference(
        [str(folder), str(tmp_path / "out"), "--weights", str(fid_weights.path),
         "--sha256", fid_weights.sha256, "--device", "cpu", "--quiet", "--batch-size", "8"]
    )  # fmt: skip
    assert status == 0
    stats = load_stats(tmp_path / "out" / "stats.npz")

    prefix = f"fid-inception-v3/pool3@sha256:{fid_weights.sha256[:16]}/"
    assert stats.feature_space.startswith(prefix)
    # 8 images in 2048 dimensions: sigma has rank 7, so compare entries (an FD between
    # rank-deficient covariances is dominated by sqrtm's rounding, not by the statistics).
    np.testing.assert_allclose(stats.mu, mu_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(stats.sigma, sigma_ref, rtol=0, atol=1e-6)


# pytorch-fid passes scipy's sqrtm the deprecated ``disp`` argument.
@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_stats_command_matches_save_fid_stats_to_1e_10_in_fd(
    fid_weights: Weights, pytorch_fid_home: Path, tmp_path: Path
) -> None:
    """64-dimensional block-0 features of 96 images: full-rank covariances, so the Fréchet
    distance between the two sets of statistics is meaningful down to 1e-10."""
    folder = tmp_path / "pngs"
    _write_pngs(folder, 96, 24, seed=3)
    theirs = tmp_path / "pytorch-fid.npz"
    fid_score.save_fid_stats([str(folder), str(theirs)], 50, "cpu", 64, num_workers=0)
    status = build_reference(
        [str(folder), str(tmp_path / "out"), "--weights", str(fid_weights.path),
         "--sha256", fid_weights.sha256, "--dims", "64", "--device", "cpu", "--quiet"]
    )  # fmt: skip
    assert status == 0

    ours = load_stats(tmp_path / "out" / "stats.npz")
    with np.load(theirs) as ref:
        mu_ref, sigma_ref = ref["mu"], ref["sigma"]
    assert ours.feature_space.startswith("fid-inception-v3/maxpool1@sha256:")
    assert np.linalg.eigvalsh(sigma_ref).min() > 0  # full rank: the FD below is well defined
    fd = fid_score.calculate_frechet_distance(ours.mu, ours.sigma, mu_ref, sigma_ref)
    scale = fid_score.calculate_frechet_distance(ours.mu, ours.sigma, 0 * mu_ref, sigma_ref / 2)
    assert scale > 1.0  # a distance the comparison could have failed on
    assert abs(fd) < 1e-10
    # pytorch-fid reads our file (the extra feature_space member is ignored).
    mu, _ = fid_score.compute_statistics_of_path(
        str(tmp_path / "out" / "stats.npz"), None, 50, 64, "cpu"
    )
    np.testing.assert_array_equal(mu, ours.mu)


def test_wrong_hash_is_refused_naming_the_official_file(fid_weights: Weights) -> None:
    with pytest.raises(WeightsHashMismatch) as caught:
        inception_extractor(fid_weights.path)  # the pinned hash: the random file is not it
    message = str(caught.value)
    assert FID_INCEPTION_SHA256 in message
    assert fid_weights.sha256 in message
    assert FID_INCEPTION_URL in message


def test_missing_file_is_refused_naming_the_official_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFound, match="not found") as caught:
        inception_extractor(tmp_path / "nothing.pth")
    assert FID_INCEPTION_URL in str(caught.value)


def test_command_reports_a_refused_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "pngs"
    _write_pngs(folder, 2, 8, seed=4)
    status = build_reference([str(folder), str(tmp_path / "out"), "--weights", "missing.pth"])
    assert status == 2
    assert FID_INCEPTION_URL in caplog.text


def test_only_pytorch_fid_blocks_are_offered(fid_weights: Weights) -> None:
    with pytest.raises(ValueError, match="dims must be one of"):
        inception_extractor(fid_weights.path, dims=100, expected_sha256=fid_weights.sha256)
