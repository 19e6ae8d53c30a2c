"""frechet_distance against pytorch-fid's scipy formula and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_data import features, scipy_fd, spectrum_basis, target_of

from reward_service.engine import frechet_distance, gaussian_of


@pytest.mark.parametrize("d", [1, 2, 8, 64, 256])
def test_matches_scipy_sqrtm_on_well_conditioned_data(d: int) -> None:
    rng = np.random.default_rng(d)
    mu_a, sigma_a = target_of(rng, d, condition=10.0)
    mu_b, sigma_b = target_of(rng, d, condition=100.0)
    expected = scipy_fd(mu_a, sigma_a, mu_b, sigma_b)
    assert frechet_distance(mu_a, sigma_a, mu_b, sigma_b) == pytest.approx(expected, rel=1e-6)


def test_is_symmetric_in_its_arguments() -> None:
    rng = np.random.default_rng(1)
    mu_a, sigma_a = target_of(rng, 32, 1e3)
    mu_b, sigma_b = target_of(rng, 32, 1e2)
    forward = frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    assert frechet_distance(mu_b, sigma_b, mu_a, sigma_a) == pytest.approx(forward, rel=1e-10)


def test_equal_covariances_leave_the_squared_mean_distance() -> None:
    rng = np.random.default_rng(2)
    _, sigma = target_of(rng, 16, 50.0)
    mu_a, mu_b = rng.normal(size=16), rng.normal(size=16)
    expected = float(np.sum((mu_a - mu_b) ** 2))
    assert frechet_distance(mu_a, sigma, mu_b, sigma) == pytest.approx(expected, rel=1e-8, abs=1e-9)


def test_identical_gaussians_are_at_distance_zero() -> None:
    rng = np.random.default_rng(3)
    mu, sigma = target_of(rng, 24, 1e4)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_isotropic_closed_form() -> None:
    # N(0, a I) to N(0, b I): d (sqrt(a) - sqrt(b))^2.
    d, a, b = 10, 4.0, 9.0
    value = frechet_distance(np.zeros(d), a * np.eye(d), np.zeros(d), b * np.eye(d))
    assert value == pytest.approx(d * (np.sqrt(a) - np.sqrt(b)) ** 2, rel=1e-12)


def test_singular_covariances_stay_real_and_finite() -> None:
    rng = np.random.default_rng(4)
    basis = spectrum_basis(rng, 64, 10.0)
    few = features(rng, 10, basis, 0.0)  # rank 9 covariance in 64 dimensions
    mu_a, sigma_a = (t.numpy() for t in gaussian_of(torch.as_tensor(few)))
    mu_b, sigma_b = target_of(rng, 64, 1e12)
    value = frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    assert np.isfinite(value) and value >= 0.0
    assert frechet_distance(mu_a, sigma_a, mu_a, sigma_a) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("mu_a", "sigma_a", "message"),
    [
        (np.zeros(3), np.eye(4), "sigma_a has shape"),
        (np.zeros((3, 1)), np.eye(3), "mu_a has shape"),
        (np.array([0.0, np.nan, 0.0]), np.eye(3), "NaN or Inf"),
        (np.zeros(3), np.full((3, 3), np.inf), "NaN or Inf"),
    ],
)
def test_bad_input_raises_value_error(mu_a: np.ndarray, sigma_a: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        frechet_distance(mu_a, sigma_a, np.zeros(3), np.eye(3))
