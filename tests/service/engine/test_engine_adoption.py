"""A version's precompute built by one engine and adopted by another that holds the same pool:
the same rewards as building it, the commits since it kept pending; another pool's refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from engine_data import features, scipy_fd, spectrum_basis, target_of

from reward_service.engine import RewardEngine


def _pair(seed: int, d: int = 64, n: int = 600):
    rng = np.random.default_rng(seed)
    mu, sigma = target_of(rng, d, 1e3)
    basis = spectrum_basis(rng, d, 30.0)
    pool = features(rng, n, basis, 0.2)
    engines = [RewardEngine(mu, sigma, pool, device="cpu") for _ in range(2)]
    return rng, basis, mu, sigma, engines


def test_an_adopted_version_serves_as_if_built_here_with_later_commits_pending() -> None:
    rng, basis, mu, sigma, (builder, adopter) = _pair(30)
    commits = [features(rng, 3, basis, 0.3) for _ in range(4)]
    for rows in commits[:2]:
        builder.append(rows)
        adopter.append(rows)
    builder.rebuild()
    for rows in commits[2:]:  # the adopter ran ahead: these stay pending on the adopted version
        adopter.append(rows)
    arrays = builder.export_built()
    assert arrays.version == 2 and adopter.built_version == 0
    assert adopter.adopt(arrays)
    assert adopter.built_version == 2 and adopter.pending_rows == 6 and adopter.version == 4
    assert adopter.rebuilds == 0 and adopter.adoptions == 1
    samples = features(rng, 16, basis, 0.25)
    held = adopter.pool()
    oracle = scipy_fd(held.mean(0), np.cov(held, rowvar=False), mu, sigma)
    assert adopter.base_fd == pytest.approx(oracle, rel=1e-9)
    credits = adopter.credits(samples)
    expected = [
        oracle - scipy_fd(np.vstack([held, s]).mean(0), np.cov(np.vstack([held, s]).T), mu, sigma)
        for s in samples
    ]
    np.testing.assert_allclose(credits.rewards, expected, rtol=0, atol=1e-9 * max(1.0, oracle))
    groups = features(rng, 4 * 3, basis, 0.25).reshape(4, 3, -1)
    builder.append(commits[2])
    builder.append(commits[3])
    mine, theirs = adopter.rewards(groups, seed=5), builder.rewards(groups, seed=5)
    np.testing.assert_allclose(mine.rewards, theirs.rewards, rtol=1e-9, atol=1e-12)


def test_a_precompute_of_another_pool_or_version_is_refused_and_changes_nothing() -> None:
    rng, basis, _, _, (builder, adopter) = _pair(31)
    builder.append(features(rng, 3, basis, 0.3))
    adopter.append(features(rng, 3, basis, 0.3))  # another commit: another pool at version 1
    builder.rebuild()
    arrays = builder.export_built()
    before = adopter.base_fd
    assert not adopter.adopt(arrays)
    assert adopter.built_version == 0 and adopter.base_fd == before and adopter.adoptions == 0
    assert not adopter.adopt(dataclasses.replace(arrays, version=7))  # not held
    shifted = dataclasses.replace(arrays, eigenvalues=arrays.eigenvalues * (1 + 1e-6))
    assert not adopter.adopt(shifted)
