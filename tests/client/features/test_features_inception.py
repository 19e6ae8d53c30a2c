"""The Inception extractor against pytorch-fid itself, on the same (random) weights file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from examples.digits.service import Endpoint


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


def test_pool3_features_and_stats_of_a_png_folder_equal_pytorch_fids(
    fid_weights: Weights, pytorch_fid_home: Path, tmp_path: Path
) -> None:
    """pytorch-fid's own pipeline (PIL decoding, ToTensor, its InceptionV3 loaded from the test's
    file) against the build_reference command on the same folder: per-image features and the
    statistics."""
    folder = tmp_path / "pngs"
    pixels = _write_pngs(folder, 5, 32, seed=2)
    expected = fid_score.get_activations(
        sorted(folder.glob("*.png")), InceptionV3([3]).eval(), batch_size=5, num_workers=0
    )
    status = build_reference(
        [str(folder), str(tmp_path / "out"), "--weights", str(fid_weights.path),
         "--sha256", fid_weights.sha256, "--device", "cpu", "--quiet", "--batch-size", "5"]
    )  # fmt: skip
    assert status == 0

    features = np.load(tmp_path / "out" / "pool.npy")
    assert features.dtype == np.float32
    assert features.shape == (5, 2048)
    assert expected.std(axis=0).mean() > 0.05  # the random network tells the images apart
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-5)
    stats = load_stats(tmp_path / "out" / "stats.npz")
    prefix = f"fid-inception-v3/pool3@sha256:{fid_weights.sha256[:16]}/"
    assert stats.feature_space.startswith(prefix)
    # pytorch-fid's calculate_activation_statistics is np.mean / np.cov of these activations.
    # 5 images in 2048 dimensions give sigma rank 4, so compare entries: an FD between
    # rank-deficient covariances measures sqrtm's rounding, not the statistics.
    np.testing.assert_allclose(stats.mu, expected.mean(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(stats.sigma, np.cov(expected, rowvar=False), rtol=0, atol=1e-6)

    # Grey images are read as PIL's convert("RGB") reads them: the channel repeated; numpy
    # batches are taken as they are.
    extract = inception_extractor(fid_weights.path, expected_sha256=fid_weights.sha256)
    grey = pixels[:1, :, :, :1].transpose(0, 3, 1, 2)
    rgb = torch.from_numpy(grey).expand(-1, 3, -1, -1)
    torch.testing.assert_close(extract(grey), extract(rgb), rtol=0, atol=0)


# pytorch-fid passes scipy's sqrtm the deprecated ``disp`` argument.
@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_stats_command_matches_save_fid_stats_to_1e_10_in_fd(
    fid_weights: Weights, pytorch_fid_home: Path, tmp_path: Path
) -> None:
    """64-dimensional block-0 features of 80 images (full-rank covariances): the statistics
    agree to rounding, and pytorch-fid's FD between them is its FD of its own statistics with
    themselves to 1e-10. (That FD is not 0: sqrtm's rounding on a covariance of condition ~1e6
    leaves ~1e-10, a floor no implementation can go under.)"""
    folder = tmp_path / "pngs"
    _write_pngs(folder, 80, 24, seed=3)
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
    np.testing.assert_allclose(ours.mu, mu_ref, rtol=1e-13, atol=0)
    np.testing.assert_allclose(ours.sigma, sigma_ref, rtol=0, atol=1e-13 * np.abs(sigma_ref).max())
    fd = fid_score.calculate_frechet_distance(ours.mu, ours.sigma, mu_ref, sigma_ref)
    floor = fid_score.calculate_frechet_distance(mu_ref, sigma_ref, mu_ref, sigma_ref)
    scale = fid_score.calculate_frechet_distance(ours.mu, ours.sigma, 0 * mu_ref, sigma_ref / 2)
    assert scale > 1.0  # a distance the comparison could have failed on
    assert abs(fd - floor) < 1e-10
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


def test_command_uploads_target_and_pool(
    fid_weights: Weights, service: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "pngs"
    _write_pngs(folder, 6, 16, seed=5)
    monkeypatch.setenv("DISTREWARD_TOKEN", service.token)
    status = build_reference(
        [str(folder), str(tmp_path / "out"), "--weights", str(fid_weights.path),
         "--sha256", fid_weights.sha256, "--dims", "64", "--device", "cpu", "--quiet",
         "--upload-target", "cli-upload", "--upload-pool", "cli-upload", "--url", service.url]
    )  # fmt: skip
    assert status == 0
    stats = load_stats(tmp_path / "out" / "stats.npz")
    with service.client() as client:
        info = client.info("cli-upload")
        pool = np.load(tmp_path / "out" / "pool.npy")
        fd = client.fd("cli-upload", pool, feature_space=stats.feature_space)
        client.delete("cli-upload")
    assert (info.d, info.n, info.feature_space) == (64, 6, stats.feature_space)
    assert fd.fd == pytest.approx(0.0, abs=1e-6 * np.trace(stats.sigma))  # the pool is the target
