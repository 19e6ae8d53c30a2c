"""Image sources, resumable reference building, user modules (the digits CNN) and the upload."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reward_client.features import (
    FeatureError,
    FeatureExtractor,
    FeatureSpaceMismatch,
    WeightsHashMismatch,
    compute_reference,
    module_extractor,
    open_images,
    quantize,
    state_dict_sha256,
    upload_reference,
)
from reward_client.features._extractor import rgb_uint8

if TYPE_CHECKING:
    from examples.digits.service import Endpoint


def _pixels(count: int, seed: int = 0, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def _tiny_extractor(seed: int = 0, calls: list[int] | None = None) -> FeatureExtractor:
    """A linear map of 8x8 RGB images to 5 features; ``calls`` records each batch's size."""
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(len(images))
        return rgb_uint8(images) / 255

    return module_extractor(
        network,
        name="test/linear",
        preprocess=preprocess,
        preprocess_id="rgb-u8,scale=1:255",
        dim=5,
    )


def _direct(extractor: FeatureExtractor, pixels: np.ndarray) -> np.ndarray:
    return extractor(torch.from_numpy(pixels).permute(0, 3, 1, 2)).numpy()


def test_every_source_kind_reads_the_same_images_in_order(tmp_path: Path) -> None:
    pixels = _pixels(5)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    names = ["a.png", "b.png", "c.png", "sub/d.png", "sub/e.png"]
    for name, image in zip(names, pixels, strict=True):
        Image.fromarray(image).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:
        for name in names:
            archive.write(folder / name, name)
    with tarfile.open(tmp_path / "images.tar.gz", "w:gz") as archive:
        for name in names:
            archive.add(folder / name, name)
    np.savez(tmp_path / "batch.npz", arr_0=pixels)  # the ADM / EDM sample-batch layout

    for path in ["folder", "images.zip", "images.tar.gz", "batch.npz"]:
        with open_images(tmp_path / path) as source:
            assert len(source) == 5, path
            np.testing.assert_array_equal(np.stack(source.read(0, 5)), pixels, err_msg=path)
            np.testing.assert_array_equal(np.stack(source.read(2, 4)), pixels[2:4], err_msg=path)


def test_npz_batches_must_hold_uint8_images(tmp_path: Path) -> None:
    np.savez(tmp_path / "float.npz", arr_0=np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        open_images(tmp_path / "float.npz")
    np.savez(tmp_path / "stats.npz", mu=np.zeros(3))
    with pytest.raises(ValueError, match="arr_0"):
        open_images(tmp_path / "stats.npz")
    with pytest.raises(FileNotFoundError):
        open_images(tmp_path / "missing")


def test_reference_equals_direct_statistics_and_resumes_after_a_crash(tmp_path: Path) -> None:
    pixels = _pixels(10)
    np.savez(tmp_path / "batch.npz", arr_0=pixels)
    source = open_images(tmp_path / "batch.npz")
    out = tmp_path / "ref"

    crashing = _tiny_extractor()
    real_forward = crashing._forward

    def crash_in_second_shard(x: torch.Tensor) -> torch.Tensor:
        if len(list((out / "shards").glob("shard-*.npy"))) == 1:
            raise KeyboardInterrupt
        return real_forward(x)

    crashing._forward = crash_in_second_shard
    with pytest.raises(KeyboardInterrupt):
        compute_reference(source, crashing, out, batch_size=2, shard_size=4, progress=False)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-000000.npy"]

    calls: list[int] = []
    built = compute_reference(
        source, _tiny_extractor(calls=calls), out, batch_size=2, shard_size=4, progress=False
    )
    assert built.computed == 6  # images 4..9: the first shard was kept
    assert sum(calls) == 6
    # The pool holds every image's features in order (float32 batch-size rounding aside), and
    # the statistics are exactly those of the pool.
    pool = np.load(built.pool_path).astype(np.float64)
    np.testing.assert_allclose(pool, _direct(_tiny_extractor(), pixels), rtol=0, atol=1e-6)
    np.testing.assert_allclose(built.stats.mu, pool.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(built.stats.sigma, np.cov(pool, rowvar=False), rtol=0, atol=1e-12)
    assert built.stats.feature_space == _tiny_extractor().feature_space.id

    again = compute_reference(source, _tiny_extractor(), out, shard_size=4, progress=False)
    assert again.computed == 0


def test_resuming_with_another_feature_space_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "batch.npz", arr_0=_pixels(6))
    source = open_images(tmp_path / "batch.npz")
    compute_reference(source, _tiny_extractor(seed=0), tmp_path / "ref", progress=False)
    with pytest.raises(FeatureSpaceMismatch, match="another output directory"):
        compute_reference(source, _tiny_extractor(seed=1), tmp_path / "ref", progress=False)
    with pytest.raises(ValueError, match="same source and shard size"):
        compute_reference(source, _tiny_extractor(seed=0), tmp_path / "ref", shard_size=2)


def test_pool_is_a_seeded_sample_and_images_of_mixed_sizes_work(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    small, large = _pixels(4, seed=1), _pixels(3, seed=2, size=16)
    for i, image in enumerate([*small, *large]):
        Image.fromarray(image).save(folder / f"{i}.png")
    torch.manual_seed(0)
    network = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 4))
    pooled = module_extractor(
        network,
        name="test/pooled",
        preprocess=lambda x: rgb_uint8(x) / 255,
        preprocess_id="rgb-u8",
        dim=4,
    )
    built = compute_reference(
        open_images(folder), pooled, tmp_path / "ref", pool_size=5, seed=3, progress=False
    )
    pool = np.load(built.pool_path)
    assert pool.shape == (5, 4)
    everything = np.concatenate([_direct(pooled, small), _direct(pooled, large)])
    rows = np.sort(np.random.default_rng(3).choice(7, size=5, replace=False))
    np.testing.assert_allclose(pool, everything[rows], rtol=1e-6)


def test_quantize_rounds_as_saving_a_png_does() -> None:
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 1.0, 1.5])
    assert quantize(x).tolist() == [0, 0, 128, 191, 255, 255]
    assert quantize(torch.tensor([0.0, 0.5, 1.0]), 0.0, 1.0).tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="NaN"):
        quantize(torch.tensor([float("nan")]))


def test_float_images_are_refused_by_the_standard_preprocessing() -> None:
    with pytest.raises(ValueError, match="quantise"):
        rgb_uint8(torch.zeros(1, 3, 8, 8))


def _digits_cnn(seed: int) -> nn.Module:
    from examples.digits.models import FeatureCNN

    torch.manual_seed(seed)
    return FeatureCNN(width=64).eval()


def test_the_digits_cnn_is_a_feature_space(tmp_path: Path) -> None:
    from examples.digits.features import cnn_extractor

    cnn = _digits_cnn(0)
    extract = cnn_extractor(cnn)
    assert extract.feature_space.id.startswith("digits-cnn/penultimate@sha256:")
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(extract(images), cnn.features(images), rtol=0, atol=0)

    # The same weights saved and loaded elsewhere name the same space; other weights do not.
    torch.save(cnn.state_dict(), tmp_path / "model.pt")
    reloaded = _digits_cnn(1)
    assert cnn_extractor(reloaded).feature_space != extract.feature_space
    reloaded.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    assert cnn_extractor(reloaded).feature_space == extract.feature_space
    assert extract.feature_space.weights_sha256 == state_dict_sha256(cnn)

    space = extract.feature_space
    with pytest.raises(WeightsHashMismatch, match="digits-cnn/penultimate"):
        module_extractor(
            _digits_cnn(2),
            name=space.name,
            preprocess=extract.preprocess,
            preprocess_id=space.preprocess,
            dim=space.dim,
            sha256=space.weights_sha256,
        )


def test_a_wrong_output_shape_is_reported() -> None:
    extract = module_extractor(
        nn.Flatten(), name="test/flat", preprocess=lambda x: x.float(), preprocess_id="raw", dim=3
    )
    with pytest.raises(FeatureError, match=r"expected \(2, 3\)"):
        extract(torch.zeros(2, 1, 2, 2, dtype=torch.uint8))


def test_images_to_reference_to_rewards_on_a_real_service(
    service: Endpoint, tmp_path: Path
) -> None:
    pixels = _pixels(48, seed=5)
    np.savez(tmp_path / "batch.npz", arr_0=pixels)
    extract = _tiny_extractor()
    built = compute_reference(
        open_images(tmp_path / "batch.npz"), extract, tmp_path / "ref", progress=False
    )
    with service.client() as client:
        target, pool = upload_reference(client, built, target="features-e2e", pool="features-e2e")
        assert (target.d, pool.d, pool.n) == (5, 5, 48)
        assert target.feature_space == pool.feature_space == extract.feature_space.id
        groups = extract(torch.from_numpy(_pixels(8, seed=6)).permute(0, 3, 1, 2))
        space = extract.feature_space
        batch = client.rewards("features-e2e", groups.reshape(2, 4, 5), feature_space=space)
        client.delete("features-e2e")
    assert len(batch.rewards) == 2
    assert np.isfinite(batch.rewards).all()
