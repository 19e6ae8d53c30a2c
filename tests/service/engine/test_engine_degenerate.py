"""Commits that would make a pool numerically singular for the low-rank path: refused by
``check_commit`` before anything changes, where the pool was regular; a pool singular by nature
(N <= d) takes any commit and is served exactly. The exact path is the reference throughout."""

from __future__ import annotations

import numpy as np
import pytest
from engine_data import features, spectrum_basis, target_of

from reward_service.engine import DegeneratePool, QuadratureSettings, RewardEngine

D = 64
LIMIT = QuadratureSettings().min_relative_eigenvalue


def _engine(
    seed: int, n: int, quadrature: QuadratureSettings | None = None
) -> tuple[np.random.Generator, RewardEngine]:
    rng = np.random.default_rng(seed)
    mu, sigma = target_of(rng, D, 1e3)
    pool = features(rng, n, spectrum_basis(rng, D, 30.0), 0.2)
    return rng, RewardEngine(mu, sigma, pool, device="cpu", quadrature=quadrature)


def _copy(engine: RewardEngine) -> RewardEngine:
    """The same pool in another engine, as a replica replaying the log holds it."""
    return RewardEngine.from_state_dict(engine.state_dict(), device="cpu")


def _state(engine: RewardEngine) -> tuple[int, float, int, np.ndarray]:
    return engine.version, engine.base_fd, engine.cursor, engine.pool()


def _assert_served_lowrank(engine: RewardEngine, rng: np.random.Generator) -> None:
    """Groups of 4 (update rank 9, inside a quarter of d) certified on the low-rank path, and
    equal to the exact path's rewards."""
    groups = rng.normal(size=(6, 4, D))
    fast = engine.rewards(groups, seed=3)
    exact = engine.rewards(groups, seed=3, method="exact")
    assert fast.methods_used == ("lowrank",) * 6
    scale = max(1.0, abs(engine.base_fd))
    np.testing.assert_allclose(fast.rewards, exact.rewards, rtol=0, atol=1e-9 * scale)


def test_a_commit_of_n_equal_rows_is_refused_and_changes_nothing() -> None:
    rng, engine = _engine(0, 512)
    assert engine.lowrank_ready
    before = _state(engine)
    zeros = np.zeros((512, D))
    with pytest.raises(DegeneratePool, match="numerically singular") as refused:
        engine.check_commit(zeros)
    assert np.isnan(refused.value.ratio) and refused.value.rows == 512  # A S A would be zero
    version, base_fd, cursor, pool = _state(engine)
    assert (version, base_fd, cursor) == before[:3]
    np.testing.assert_array_equal(pool, before[3])
    assert engine.lowrank_ready
    _assert_served_lowrank(engine, rng)
    # The refusal is needed: applied anyway (as a replica applies what its log holds), the
    # commit sends every group of every caller to the exact path.
    applied = _copy(engine)
    applied.append(zeros)
    assert not applied.lowrank_ready
    result = applied.rewards(rng.normal(size=(6, 4, D)), seed=3)
    assert result.methods_used == ("exact",) * 6


def test_small_commits_are_refused_at_the_one_that_would_make_the_pool_singular() -> None:
    rng, engine = _engine(1, 256)
    zeros = np.zeros((16, D))
    accepted = 0
    while True:
        try:
            engine.check_commit(zeros)
        except DegeneratePool as refused:
            assert refused.ratio <= LIMIT
            break
        engine.append(zeros)
        accepted += 1
        assert accepted < 256 // 16, "the pool of equal rows was never refused"
    # With R rows of the original pool left beside the zeros, the scatter has rank R: regular
    # while R >= d. The commit refused is the first to leave fewer.
    assert 256 - 16 * accepted >= D > 256 - 16 * (accepted + 1)
    engine.rebuild()
    assert engine.lowrank_ready
    crossed = _copy(engine)
    crossed.append(zeros)
    crossed.rebuild()
    assert not crossed.lowrank_ready
    # Rows that restore the spread go through, and the pool stays on the low-rank path.
    fresh = features(rng, 64, spectrum_basis(rng, D, 30.0), 0.2)
    engine.check_commit(fresh)
    engine.append(fresh)
    engine.rebuild()
    _assert_served_lowrank(engine, rng)


def test_a_certified_commit_is_shown_regular_by_its_certificate_without_a_build() -> None:
    rng, engine = _engine(2, 512)
    rows = features(rng, 8, spectrum_basis(rng, D, 30.0), 0.2)
    rebuilds = engine.rebuilds
    engine.check_commit(rows)
    committed = engine.append(rows)
    assert committed.method == "lowrank" and engine.rebuilds == rebuilds


def test_an_append_after_its_check_applies_the_head_the_check_worked_out() -> None:
    # A limit a quarter of this pool's lambda_min / lambda_max: the certificate's interval,
    # [lambda_min / 4, at least lambda_max], cannot show the head regular, so the check builds
    # it, and the append that follows applies that build instead of certifying again.
    _, probe = _engine(3, 512)
    state = probe.state_dict()
    root = np.linalg.cholesky(state["target_sigma"])  # L^T S L has the eigenvalues of A S A
    spectrum = np.linalg.eigvalsh(root.T @ np.cov(state["pool"], rowvar=False) @ root)
    quadrature = QuadratureSettings(min_relative_eigenvalue=spectrum[0] / spectrum[-1] / 4)
    rng, checked = _engine(3, 512, quadrature)
    _, unchecked = _engine(3, 512, quadrature)
    rows = features(rng, 8, spectrum_basis(rng, D, 30.0), 0.2)
    checked.check_commit(rows)
    applied, plain = checked.append(rows), unchecked.append(rows)
    assert (applied.method, plain.method) == ("exact", "lowrank")
    assert applied.version == plain.version
    assert applied.base_fd == pytest.approx(plain.base_fd, rel=0, abs=1e-9 * abs(plain.base_fd))
    # Another head or other rows: the kept work is not used.
    other = rows + 1.0
    checked.check_commit(other)
    assert checked.append(rows).method == "lowrank"


def test_a_pool_singular_by_nature_takes_any_commit_and_is_served_exactly() -> None:
    rng, engine = _engine(4, D - 16)  # N <= d
    assert not engine.lowrank_ready
    zeros = np.zeros((D - 16, D))
    engine.check_commit(zeros)
    engine.append(zeros)
    engine.check_commit(features(rng, 8, spectrum_basis(rng, D, 30.0), 0.2))
    groups = rng.normal(size=(3, 4, D))
    fast, exact = engine.rewards(groups, seed=5), engine.rewards(groups, seed=5, method="exact")
    assert fast.methods_used == ("exact",) * 3
    np.testing.assert_array_equal(fast.rewards, exact.rewards)
