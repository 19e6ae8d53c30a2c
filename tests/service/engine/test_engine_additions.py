"""Per-sample credits in the ``add`` form: ``FD(pool) - FD(pool with the sample added)``, matched
to a from-scratch float64 recompute, on every path (built head, pending commits, exact), and the
same on every engine that holds the same pool version."""

from __future__ import annotations

import numpy as np
import pytest
from engine_data import features, scipy_fd, spectrum_basis, target_of

from reward_service.engine import QuadratureSettings, RewardEngine, VersionNotHeld, sample_credits

WIDE_RANK = QuadratureSettings(max_rank_fraction=1.0)


def _problem(seed: int, d: int = 24, n: int = 300):
    rng = np.random.default_rng(seed)
    mu, sigma = target_of(rng, d, 1e3)
    basis = spectrum_basis(rng, d, 30.0)
    return rng, basis, mu, sigma, features(rng, n, basis, 0.2)


def _added_credits(pool: np.ndarray, samples: np.ndarray, mu: np.ndarray, sigma: np.ndarray):
    """The oracle: two-pass mean and covariance of the pool with each sample appended, scipy's
    ``sqrtm`` for the FD, float64 throughout."""

    def fd(rows: np.ndarray) -> float:
        return scipy_fd(rows.mean(0), np.cov(rows, rowvar=False), mu, sigma)

    base = fd(pool)
    return base, np.array([base - fd(np.vstack([pool, sample])) for sample in samples])


@pytest.mark.parametrize("pending", [0, 5])
@pytest.mark.parametrize("method", ["lowrank", "exact"])
def test_added_credits_equal_a_from_scratch_recompute(pending: int, method: str) -> None:
    rng, basis, mu, sigma, pool = _problem(20)
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    if pending:
        engine.append(features(rng, pending, basis, 0.3))
    samples = features(rng, 48, basis * 1.2, 0.25)
    result = engine.credits(samples, method=method)
    assert result.form == "add" and result.row is None and result.seed is None
    assert result.methods_used == (method,) * 48 and result.version == engine.version
    base, expected = _added_credits(engine.pool(), samples, mu, sigma)
    assert result.base_fd == pytest.approx(base, rel=1e-9)
    np.testing.assert_allclose(result.rewards, expected, rtol=0, atol=1e-9 * max(1.0, base))
    np.testing.assert_allclose(result.fds, result.base_fd - result.rewards, rtol=1e-15)
    # Credits differ between samples by far more than the tolerance: the test can fail.
    assert np.ptp(expected) > 1e3 * 1e-9 * max(1.0, base)


def test_a_sample_gets_one_credit_whatever_else_the_request_holds() -> None:
    """No row is drawn: the same sample at the same version has the same credit in any batch,
    on any engine holding that version (ranks and replicas), and from sample_credits."""
    rng, basis, mu, sigma, pool = _problem(21)
    first = RewardEngine(mu, sigma, pool, device="cpu")
    second = RewardEngine(mu, sigma, pool, device="cpu")
    committed = features(rng, 3, basis, 0.3)
    first.append(committed)
    second.append(committed)
    samples = features(rng, 40, basis, 0.25)
    whole = first.credits(samples)
    halves = [second.credits(samples[:17]), second.credits(samples[17:])]
    again = sample_credits(first, samples[::-1])
    assert whole.version == halves[0].version == again.version
    np.testing.assert_allclose(np.concatenate([h.rewards for h in halves]), whole.rewards, 1e-10)
    np.testing.assert_allclose(again.rewards[::-1], whole.rewards, rtol=1e-10)


def test_the_add_form_takes_no_row_or_seed_and_the_replace_form_still_does() -> None:
    rng, basis, mu, sigma, pool = _problem(22)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    samples = features(rng, 6, basis, 0.25)
    for kwargs in ({"row": 3}, {"seed": 1}):
        with pytest.raises(ValueError, match="only with form 'replace'"):
            engine.credits(samples, **kwargs)
    with pytest.raises(ValueError, match="form must be one of add, replace"):
        engine.credits(samples, form="swap")  # type: ignore[arg-type]
    replaced = engine.credits(samples, form="replace", row=3)
    assert replaced.form == "replace" and replaced.row == 3


def test_a_rank_deficient_pool_falls_back_to_the_exact_path_without_nan() -> None:
    """N <= d: M is singular, no quadrature is certified, every sample goes exact."""
    rng, basis, mu, sigma, _ = _problem(23, d=24)
    pool = features(rng, 12, basis, 0.2)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    samples = features(rng, 5, basis, 0.25)
    result = engine.credits(samples)
    assert result.methods_used == ("exact",) * 5 and np.isfinite(result.rewards).all()
    base, expected = _added_credits(pool, samples, mu, sigma)
    # The exact path's floor on a singular M: about d sqrt(1e-16 lambda_max) (DESIGN.md §2).
    np.testing.assert_allclose(result.rewards, expected, rtol=0, atol=1e-6 * max(1.0, base))


def test_pending_rows_beyond_the_rank_limit_are_folded_through_the_heads_factorisation() -> None:
    """Pending rows past what a request could factor on its own (rank 2P + 3 > d / 4): the
    samples' columns are appended to the head's factorisation, no rebuild is forced, and the
    credits still match the oracle, also after more commits (a new head, a new completion)."""
    rng, basis, mu, sigma, pool = _problem(24, d=64, n=600)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    samples = features(rng, 30, basis * 1.2, 0.25)
    engine.append(features(rng, 3, basis, 0.3))
    for pending in (9, 15):  # past 6, the most a request factors on its own at d = 64; 15 is
        for _ in range(2):  # the most commits hold
            engine.append(features(rng, 3, basis, 0.3))
        assert engine.pending_rows == pending and engine.built_version == 0
        result = engine.credits(samples)
        assert result.methods_used == ("lowrank",) * 30 and engine.rebuilds == 0
        base, expected = _added_credits(engine.pool(), samples, mu, sigma)
        assert result.base_fd == pytest.approx(base, rel=1e-9)
        np.testing.assert_allclose(result.rewards, expected, rtol=0, atol=1e-9 * max(1.0, base))


def test_credits_at_a_recent_version_are_that_versions_after_the_pool_moved_on() -> None:
    """The ranks of one step ask at the version the step began with while commits (theirs,
    a rebuild) move the head: the answer is that version's, matched to the oracle on the pool
    as it was; versions beyond the kept history are refused."""
    rng, basis, mu, sigma, pool = _problem(25, d=64, n=600)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    engine.append(features(rng, 3, basis, 0.3))
    began, rows_then = engine.version, engine.pool()
    samples = features(rng, 20, basis * 1.2, 0.25)
    then = engine.credits(samples)
    for _ in range(3):
        engine.append(features(rng, 3, basis, 0.3))
    engine.rebuild()
    engine.append(features(rng, 2, basis, 0.3))
    late = engine.credits(samples, version=began)
    assert late.version == began and engine.version == began + 4
    np.testing.assert_allclose(late.rewards, then.rewards, rtol=0, atol=1e-10 * then.base_fd)
    base, expected = _added_credits(rows_then, samples, mu, sigma)
    np.testing.assert_allclose(late.rewards, expected, rtol=0, atol=1e-9 * max(1.0, base))
    oldest, newest = engine.held_versions
    assert oldest <= began and newest == engine.version
    with pytest.raises(VersionNotHeld, match="not held"):
        engine.credits(samples, version=engine.version + 1)
    with pytest.raises(VersionNotHeld, match="at the head"):
        engine.credits(samples, version=began, form="replace", row=1)


def test_every_version_of_a_run_applied_in_one_pass_can_be_asked_for() -> None:
    """A replica catching up applies a run of commits in one pass; a round's version may be
    any of them (another process chose it), and each is served as its own pool."""
    rng, basis, mu, sigma, pool = _problem(26, d=64, n=600)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    batches = [features(rng, 2, basis, 0.3) for _ in range(3)]
    committed = engine.append_many(batches)
    assert [c.version for c in committed] == [1, 2, 3]
    samples = features(rng, 12, basis * 1.2, 0.25)
    rows = pool.copy()
    rows[:2] = batches[0]
    rows[2:4] = batches[1]
    middle = engine.credits(samples, version=2)
    assert middle.version == 2 and middle.base_fd == pytest.approx(committed[1].base_fd)
    base, expected = _added_credits(rows, samples, mu, sigma)
    np.testing.assert_allclose(middle.rewards, expected, rtol=0, atol=1e-9 * max(1.0, base))


def test_commits_that_land_while_a_rebuild_runs_are_factored_for_the_new_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows committed while a rebuild's own factoring has run stay pending on the new built
    version with a factorisation of their own, so added samples fold them linearly instead of
    forcing another build."""
    rng, basis, mu, sigma, pool = _problem(27, d=64, n=600)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    engine.append(features(rng, 3, basis, 0.3))
    early = engine._later_factor

    def commits_meanwhile(built):  # type: ignore[no-untyped-def]
        factored = early(built)
        for _ in range(3):
            engine.append(features(rng, 3, basis, 0.3))
        return factored

    monkeypatch.setattr(engine, "_later_factor", commits_meanwhile)
    engine.rebuild()
    monkeypatch.undo()
    assert engine.built_version == 1 and engine.pending_rows == 9  # past what a request factors
    built = engine.rebuilds
    samples = features(rng, 10, basis, 0.25)
    result = engine.credits(samples)
    assert engine.rebuilds == built and result.methods_used == ("lowrank",) * 10
    base, expected = _added_credits(engine.pool(), samples, mu, sigma)
    np.testing.assert_allclose(result.rewards, expected, rtol=0, atol=1e-9 * max(1.0, base))
