"""Per-sample credits in the ``replace`` form against a from-scratch float64 recompute of each
modified pool (two-pass covariance, scipy ``sqrtm``), on generated problems, with and without
pending commits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_data import features, scipy_fd, spectrum_basis, target_of

from reward_service.engine import ADVANTAGE_EPSILON, RewardEngine, sample_credits


def _scipy_credits(pool: np.ndarray, samples: np.ndarray, row: int, mu, sigma) -> np.ndarray:
    """``FD_0 - FD(pool with row replaced by y_b)``, every FD recomputed from the rows."""
    base = scipy_fd(pool.mean(0), np.cov(pool, rowvar=False), mu, sigma)
    credits = []
    for sample in samples:
        modified = pool.copy()
        modified[row] = sample
        fd = scipy_fd(modified.mean(0), np.cov(modified, rowvar=False), mu, sigma)
        credits.append(base - fd)
    return np.array(credits)


@pytest.mark.parametrize("method", ["lowrank", "exact"])
@pytest.mark.parametrize("problem", range(4))
def test_credits_match_a_scipy_recompute_of_each_modified_pool(problem: int, method: str) -> None:
    rng = np.random.default_rng(100 + problem)
    # Pending commits (odd problems) stay pending while their rank 2P + 1 is under d / 4.
    d = int(rng.integers(56, 72) if problem % 2 else rng.integers(8, 40))
    n = int(rng.integers(3 * d, 6 * d))
    condition = float(10 ** rng.uniform(1, 6))
    mu, sigma = target_of(rng, d, condition)
    basis = spectrum_basis(rng, d, float(10 ** rng.uniform(0.5, 2)))
    offset = float(rng.uniform(-3, 3))
    pool = features(rng, n, basis, offset)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    # Pending commits on half the problems: the head runs ahead of the built version.
    if problem % 2:
        for _ in range(2):
            engine.append(features(rng, 3, basis * 1.2, offset + 0.1))
        assert engine.pending_rows == 6
    pool = engine.pool()
    samples = features(rng, int(rng.integers(1, 40)), basis * 1.3, offset + 0.2)
    result = sample_credits(engine, samples, seed=problem, method=method, form="replace")
    expected = _scipy_credits(pool, samples, result.row, mu, sigma)
    scale = max(1.0, abs(result.base_fd))
    np.testing.assert_allclose(result.rewards, expected, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(result.fds, result.base_fd - result.rewards, rtol=1e-15)
    assert result.version == engine.version and result.seed == problem
    assert len(result.methods_used) == len(samples)
    if method == "exact":
        assert set(result.methods_used) == {"exact"}


def test_the_fast_path_is_used_on_a_well_posed_pool_and_agrees_with_exact() -> None:
    rng = np.random.default_rng(7)
    mu, sigma = target_of(rng, 48, 1e3)
    basis = spectrum_basis(rng, 48, 30.0)
    engine = RewardEngine(mu, sigma, features(rng, 400, basis, 0.2), device="cpu")
    samples = features(rng, 300, basis, 0.3)
    fast = sample_credits(engine, samples, seed=3, form="replace")
    exact = sample_credits(engine, samples, seed=3, method="exact", form="replace")
    assert fast.methods_used == ("lowrank",) * 300 and np.isfinite(fast.error_estimates).all()
    assert exact.row == fast.row and np.isnan(exact.error_estimates).all()
    np.testing.assert_allclose(fast.rewards, exact.rewards, rtol=0, atol=1e-9 * fast.base_fd)
    centred = fast.rewards - fast.rewards.mean()
    np.testing.assert_allclose(
        fast.advantages, centred / (fast.rewards.std() + ADVANTAGE_EPSILON), rtol=1e-12
    )


def test_one_shared_row_a_seed_reproduces_it_and_a_given_row_is_used() -> None:
    rng = np.random.default_rng(8)
    mu, sigma = target_of(rng, 12, 10.0)
    basis = spectrum_basis(rng, 12, 5.0)
    pool = features(rng, 60, basis, 0.0)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    samples = torch.as_tensor(features(rng, 5, basis, 0.1), dtype=torch.float32)
    first = sample_credits(engine, samples, seed=11, form="replace")
    again = sample_credits(engine, samples, seed=11, form="replace")
    assert first.row == again.row and np.array_equal(first.rewards, again.rewards)
    drawn = sample_credits(engine, samples, form="replace")
    assert drawn.seed is not None and 0 <= drawn.row < 60
    chosen = sample_credits(engine, samples, row=17, form="replace")
    assert chosen.row == 17 and chosen.seed is None
    # A sample equal to the row it replaces leaves the pool as it was: zero credit.
    same = sample_credits(engine, pool[17:18], row=17, form="replace")
    assert abs(same.rewards[0]) <= 1e-9 * max(1.0, same.base_fd)


@pytest.mark.parametrize(
    "samples, kwargs, message",
    [
        (np.zeros((3, 5)), {}, "samples must have shape"),
        (np.zeros((0, 12)), {}, "at least 1 rows"),
        (np.full((2, 12), np.nan), {}, "NaN"),
        (np.zeros((2, 12)), {"row": 60}, "indices must lie in"),
        (np.zeros((2, 12)), {"row": 1, "seed": 2}, "either row or seed"),
    ],
)
def test_bad_samples_are_refused_and_change_nothing(samples, kwargs, message) -> None:
    rng = np.random.default_rng(9)
    mu, sigma = target_of(rng, 12, 10.0)
    engine = RewardEngine(mu, sigma, features(rng, 60, spectrum_basis(rng, 12, 5.0), 0.0))
    before = engine.pool()
    with pytest.raises(ValueError, match=message):
        sample_credits(engine, samples, form="replace", **kwargs)
    assert np.array_equal(engine.pool(), before) and engine.version == 0
