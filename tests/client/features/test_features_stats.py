"""Feature-space identifiers, float64 statistics and their .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reward_client.features import (
    UNKNOWN_FEATURE_SPACE,
    FeatureSpace,
    StatsAccumulator,
    load_stats,
    save_stats,
)

SHA = "ab" * 32


def test_identifier_names_network_weights_and_preprocessing() -> None:
    space = FeatureSpace("fid-inception-v3/pool3", SHA, "rgb-u8,resize=bilinear-299", 2048)
    assert space.id == "fid-inception-v3/pool3@sha256:abababababababab/rgb-u8,resize=bilinear-299"
    assert str(space) == space.id
    assert FeatureSpace("fid-inception-v3/pool3", SHA, "rgb-u8,resize=bilinear-299", 2048) == space


@pytest.mark.parametrize(
    ("name", "sha", "preprocess", "dim", "match"),
    [
        ("net@v1", SHA, "p", 2, "name"),
        ("net", "AB" * 32, "p", 2, "weights_sha256"),
        ("net", SHA[:-1], "p", 2, "weights_sha256"),
        ("net", SHA, "resize to/224", 2, "preprocess"),
        ("net", SHA, "p", 0, "dim"),
    ],
)
def test_identifier_parts_are_checked(
    name: str, sha: str, preprocess: str, dim: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        FeatureSpace(name, sha, preprocess, dim)


def test_accumulated_statistics_equal_numpys_two_pass_ones() -> None:
    """Batches of features far from the origin (mean 1e4, unit spread): the raw second moment
    would lose eight digits here; the shifted accumulation matches ``np.cov`` to rounding."""
    rng = np.random.default_rng(0)
    features = 1e4 + rng.normal(size=(500, 7)) @ rng.normal(size=(7, 7))
    accumulator = StatsAccumulator(7)
    for batch in np.array_split(features, [3, 4, 120, 121, 499]):
        accumulator.update(batch.astype(np.float64))
    mu, sigma = accumulator.result()

    reference = np.cov(features, rowvar=False)
    np.testing.assert_allclose(mu, features.mean(axis=0), rtol=1e-14, atol=0)
    np.testing.assert_allclose(sigma, reference, rtol=0, atol=1e-11)
    # The unshifted formula (EDM2's) on the same rows, for scale: errors near 1e-7.
    n = len(features)
    raw = (features.T @ features - n * np.outer(mu, mu)) / (n - 1)
    assert np.abs(raw - reference).max() > 1e-9
    assert accumulator.count == 500
    np.testing.assert_array_equal(sigma, sigma.T)


def test_accumulator_refuses_bad_rows() -> None:
    accumulator = StatsAccumulator(3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        accumulator.update(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        accumulator.update(np.zeros((2, 4)))
    accumulator.update(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        accumulator.result()


def test_stats_file_round_trip_carries_the_feature_space(tmp_path: Path) -> None:
    space = FeatureSpace("net", SHA, "p", 2)
    path = save_stats(tmp_path / "stats.npz", [1.0, 2.0], np.eye(2), space)
    stats = load_stats(path)
    assert stats.feature_space == space.id
    assert stats.mu.dtype == np.float64
    assert stats.dim == 2
    np.testing.assert_array_equal(stats.sigma, np.eye(2))
    assert not list(tmp_path.glob(".*tmp*"))  # written beside, renamed into place


def test_files_from_other_tools_load_as_unknown(tmp_path: Path) -> None:
    np.savez(tmp_path / "ref.npz", mu=np.zeros(3), sigma=np.eye(3))  # pytorch-fid / ADM layout
    assert load_stats(tmp_path / "ref.npz").feature_space == UNKNOWN_FEATURE_SPACE


def test_incomplete_or_pickled_files_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "mu-only.npz", mu=np.zeros(3))
    with pytest.raises(ValueError, match="lacks sigma"):
        load_stats(tmp_path / "mu-only.npz")
    np.savez(
        tmp_path / "pickled.npz",
        mu=np.zeros(2),
        sigma=np.eye(2),
        feature_space=np.array([{"not": "a string"}], dtype=object),
    )
    with pytest.raises(ValueError, match="allow_pickle"):
        load_stats(tmp_path / "pickled.npz")


def test_save_checks_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"mu \(d,\) and sigma \(d, d\)"):
        save_stats(tmp_path / "s.npz", np.zeros(3), np.eye(2), "unknown")
    with pytest.raises(ValueError, match=r"\.npz"):
        save_stats(tmp_path / "s.npy", np.zeros(2), np.eye(2), "unknown")
