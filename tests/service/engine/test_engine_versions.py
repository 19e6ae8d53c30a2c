"""Versions ahead of their precompute: commits answered from the built version, rewards for the
head with the pending commits folded in, coalescing rebuilds, and statistics that keep their
digits far from the origin and whatever passed through the ring."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from engine_data import features, scipy_fd, spectrum_basis, target_of

from reward_service.engine import (
    MAX_FEATURE_MAGNITUDE,
    QuadratureSettings,
    RewardEngine,
    frechet_distance,
    gaussian_of,
)
from reward_service.engine.pending import PendingFactor

# Pending commits and groups stay on the low-rank path at this small d.
WIDE_RANK = QuadratureSettings(max_rank_fraction=1.0)


def _problem(seed: int, d: int = 32, n: int = 300, offset: float = 0.2):
    rng = np.random.default_rng(seed)
    mu, sigma = target_of(rng, d, 1e3)
    basis = spectrum_basis(rng, d, 30.0)
    return rng, basis, mu, sigma, features(rng, n, basis, offset)


def _scale(engine: RewardEngine) -> float:
    return max(1.0, abs(engine.base_fd))


def _fresh(engine: RewardEngine, mu: np.ndarray, sigma: np.ndarray) -> RewardEngine:
    """The engine's head version built from scratch: its exact path is the reference."""
    return RewardEngine(mu, sigma, engine.pool(), device="cpu", version=engine.version)


def _extends(factor: PendingFactor, before: PendingFactor) -> bool:
    """Whether ``factor`` continues ``before`` (its columns first, in their order)."""
    assert factor.stacked is not None and before.stacked is not None
    width = before.stacked.shape[1]
    return factor.stacked.shape[1] > width and torch.equal(
        factor.stacked[:, :width], before.stacked
    )


def _held_fd(engine: RewardEngine, mu: np.ndarray, sigma: np.ndarray) -> float:
    """FD of the rows the engine holds, from scratch (two-pass covariance)."""
    mean, covariance = gaussian_of(torch.from_numpy(engine.pool()))
    return frechet_distance(mean, covariance, mu, sigma)


@pytest.mark.parametrize("mode", ["shared", "independent", "indices"])
def test_rewards_for_a_head_ahead_of_its_build_match_that_versions_exact_path(mode: str) -> None:
    rng, basis, mu, sigma, pool = _problem(1)
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    groups = features(rng, 4 * 3, basis * 1.1, 0.25).reshape(4, 3, -1)
    for step, size in enumerate([2, 5, 1, 3]):
        committed = engine.append(features(rng, size, basis, 0.3 + 0.05 * step))
        assert committed.version == engine.version == step + 1
        assert committed.method == "lowrank" and engine.built_version == 0
        assert committed.pending_rows == engine.pending_rows == sum([2, 5, 1, 3][: step + 1])
        fresh = _fresh(engine, mu, sigma)
        assert abs(committed.base_fd - fresh.base_fd) <= 1e-9 * _scale(fresh)
        # Indices overlapping the pending rows (0..10 were just committed) and others.
        indices = np.array([[0, 4, 150], [1, 11, 299], [2, 3, 7], [10, 100, 200]])
        kwargs = {"indices": indices} if mode == "indices" else {"seed": step}
        result = engine.rewards(groups, mode=mode, **kwargs)
        assert result.version == committed.version and result.base_fd == committed.base_fd
        assert result.methods_used == ("lowrank",) * 4
        reference = fresh.rewards(groups, mode="indices", indices=result.indices, method="exact")
        tolerance = 1e-9 * _scale(fresh)
        np.testing.assert_allclose(result.rewards, reference.rewards, rtol=0, atol=tolerance)
        np.testing.assert_allclose(result.fds, reference.fds, rtol=0, atol=tolerance)
        exact = engine.rewards(groups, mode="indices", indices=result.indices, method="exact")
        np.testing.assert_allclose(exact.rewards, reference.rewards, rtol=0, atol=tolerance)


def test_a_rebuild_coalesces_every_pending_commit() -> None:
    rng, basis, mu, sigma, pool = _problem(2)
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    for _ in range(5):
        engine.append(features(rng, 2, basis, 0.4))
    before = engine.base_fd
    assert engine.rebuild() == engine.version == engine.built_version == 5
    assert engine.rebuilds == 1 and engine.pending_rows == 0
    assert engine.rebuild() == 5 and engine.rebuilds == 1  # nothing pending: nothing built
    assert engine.base_fd == pytest.approx(before, rel=1e-9)
    assert engine.base_fd == pytest.approx(_fresh(engine, mu, sigma).base_fd, rel=1e-10)


def test_commits_during_a_rebuild_stay_pending_on_the_new_build() -> None:
    rng, basis, mu, sigma, pool = _problem(3)
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    engine.append(features(rng, 3, basis, 0.4))
    built = threading.Event()
    started = threading.Event()
    original_build = engine._build

    def slow_build(*args, **kwargs):
        started.set()
        built.wait(timeout=30)
        return original_build(*args, **kwargs)

    engine._build = slow_build  # type: ignore[method-assign]
    worker = threading.Thread(target=engine.rebuild)
    worker.start()
    assert started.wait(timeout=30)
    for _ in range(3):  # these land while version 1 is being built
        engine.append(features(rng, 2, basis, 0.5))
    built.set()
    worker.join(timeout=60)
    assert engine.built_version == 1 and engine.version == 4 and engine.pending_rows == 6
    fresh = _fresh(engine, mu, sigma)
    assert abs(engine.base_fd - fresh.base_fd) <= 1e-9 * _scale(fresh)
    groups = features(rng, 6, basis, 0.3).reshape(2, 3, -1)
    result = engine.rewards(groups, seed=9)
    reference = fresh.rewards(groups, mode="indices", indices=result.indices, method="exact")
    np.testing.assert_allclose(result.rewards, reference.rewards, atol=1e-9 * _scale(fresh))
    engine.rebuild()
    assert engine.built_version == engine.version == 4


def test_commits_extend_the_pending_factorisation_and_stay_exact_across_a_chain() -> None:
    # Commits of several sizes (one over a block) extend the head's factorisation; each base FD
    # matches a from-scratch float64 recompute of the rows held, and a rebuild in the middle
    # hands its successor a factorisation of the commits that landed meanwhile.
    rng, basis, mu, sigma, pool = _problem(11, d=160, n=400)
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    sizes = [1, 3, 2, 70, 1, 2]
    for step, size in enumerate(sizes):
        factor_before = engine._head.factor
        committed = engine.append(features(rng, size, basis, 0.3 + 0.02 * step))
        factor = engine._head.factor
        assert committed.method == "lowrank" and factor is not None
        assert factor.size == 2 * engine.pending_rows
        if factor_before is not None:  # extended: the earlier columns come first, unchanged
            assert _extends(factor, factor_before)
        fresh = _fresh(engine, mu, sigma)
        assert abs(committed.base_fd - fresh.base_fd) <= 1e-9 * _scale(fresh)
        assert abs(committed.base_fd - _held_fd(engine, mu, sigma)) <= 1e-9 * _scale(fresh)
        if step == 2:
            engine.rebuild()
            assert engine.pending_rows == 0 and engine._head.factor is None


def _one_by_one_forbidden(engine: RewardEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make :meth:`RewardEngine.append` fail, so that a test sees the single pass at work."""

    def refuse(features: object) -> None:
        raise AssertionError("append_many fell back to one commit at a time")

    monkeypatch.setattr(engine, "append", refuse)


def test_many_commits_in_one_pass_answer_what_each_one_alone_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Runs of commits (a catch-up of several log entries) applied in one pass: every version
    # gets the base FD it gets one commit at a time, and each matches a from-scratch float64
    # recompute of its rows; across a rebuild, from a built head (no factorisation yet) and
    # from one with commits pending.
    rng, basis, mu, sigma, pool = _problem(21, d=96, n=400)
    single = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    batched = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    reference = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    _one_by_one_forbidden(batched, monkeypatch)
    for run, sizes in enumerate([[2, 1, 3], [1], [4, 2, 2, 1], [3, 3]]):
        commits = [features(rng, size, basis, 0.3 + 0.05 * run) for size in sizes]
        if len(commits) == 1:  # a run of one is append itself
            monkeypatch.undo()
        answers = batched.append_many(commits)
        _one_by_one_forbidden(batched, monkeypatch)
        alone = [single.append(rows) for rows in commits]
        assert [a.version for a in answers] == [a.version for a in alone]
        assert [a.pending_rows for a in answers] == [a.pending_rows for a in alone]
        for answer, expected, rows in zip(answers, alone, commits, strict=True):
            reference.commit(rows)  # built at each version: the exact path
            assert answer.method == "lowrank" and answer.version == reference.version
            tolerance = 1e-9 * max(1.0, abs(reference.base_fd))
            assert abs(answer.base_fd - reference.base_fd) <= tolerance
            assert abs(answer.base_fd - expected.base_fd) <= 1e-12 * abs(expected.base_fd)
        np.testing.assert_array_equal(batched.pool(), single.pool())
        assert batched.cursor == single.cursor and batched.base_fd == answers[-1].base_fd
        assert abs(batched.base_fd - _held_fd(batched, mu, sigma)) <= 1e-9 * _scale(batched)
        if run == 1:
            batched.rebuild()
            single.rebuild()
            assert batched._head.factor is None  # the next run starts a factorisation
    # Rewards on the head the pass left match that version's exact path.
    groups = features(rng, 3 * 4, basis * 1.1, 0.25).reshape(3, 4, -1)
    result = batched.rewards(groups, seed=5)
    exact = _fresh(batched, mu, sigma).rewards(
        groups, mode="indices", indices=result.indices, method="exact"
    )
    tolerance = 1e-9 * _scale(batched)
    np.testing.assert_allclose(result.rewards, exact.rewards, rtol=0, atol=tolerance)


def test_commits_that_touch_pending_rows_go_one_by_one_with_the_same_answers() -> None:
    # A pool of 40: a run of commits that wraps the ring onto positions still pending cannot
    # extend the factorisation in one pass; append_many applies it one commit at a time.
    rng, basis, mu, sigma, pool = _problem(22, d=16, n=40)
    settings = QuadratureSettings(max_rank_fraction=8.0)
    batched = RewardEngine(mu, sigma, pool, device="cpu", quadrature=settings)
    single = RewardEngine(mu, sigma, pool, device="cpu", quadrature=settings)
    commits = [features(rng, 12, basis, 0.3) for _ in range(5)]
    answers = batched.append_many(commits)
    alone = [single.append(rows) for rows in commits]
    assert [(a.version, a.base_fd, a.method) for a in answers] == [
        (a.version, a.base_fd, a.method) for a in alone
    ]
    np.testing.assert_array_equal(batched.pool(), single.pool())
    assert abs(batched.base_fd - _held_fd(batched, mu, sigma)) <= 1e-9 * _scale(batched)


def test_a_run_with_a_bad_commit_changes_nothing() -> None:
    rng, basis, mu, sigma, pool = _problem(23, d=32, n=200)
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    bad = features(rng, 2, basis, 0.3)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        engine.append_many([features(rng, 2, basis, 0.3), bad])
    assert engine.version == 0 and engine.pending_rows == 0
    np.testing.assert_array_equal(engine.pool(), pool)


def test_a_factorisation_extended_block_by_block_equals_one_made_at_once() -> None:
    rng, basis, mu, sigma, pool = _problem(12)
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    for size in (2, 1, 4):
        engine.append(features(rng, size, basis, 0.4))
    head = engine._head
    incremental = head.factor
    assert incremental is not None and incremental.stacked is not None
    weights = torch.cat([block.weights for block in incremental.blocks])
    empty = dataclasses.replace(
        incremental, blocks=(), stacked=None, tally=type(incremental.tally)()
    )
    once = empty.extended(incremental.stacked, weights)
    assert once.tally.log_total is not None and incremental.tally.log_total is not None
    torch.testing.assert_close(
        once.tally.log_total, incremental.tally.log_total, rtol=1e-12, atol=1e-15
    )
    assert once.tally.signs_at_lo == incremental.tally.signs_at_lo == 0


def test_a_commit_that_wraps_onto_pending_rows_factors_them_anew() -> None:
    # A pool of 40 rows: the fourth commit of 12 wraps the ring onto positions still pending,
    # whose rows change, so the head's factorisation cannot be extended and is made anew (a
    # rank above d is allowed here so that the whole ring can be pending).
    rng, basis, mu, sigma, pool = _problem(13, d=16, n=40)
    settings = QuadratureSettings(max_rank_fraction=8.0)
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=settings)
    for step in range(5):
        before = engine._head.factor
        committed = engine.append(features(rng, 12, basis, 0.3))
        factor = engine._head.factor
        assert committed.method == "lowrank" and factor is not None
        assert factor.size == 2 * engine.pending_rows
        extended = before is not None and _extends(factor, before)
        if step == 1:  # within the interval it started with: extended
            assert extended
        if step == 3:  # rows at pending positions changed
            assert not extended
        assert abs(committed.base_fd - _held_fd(engine, mu, sigma)) <= 1e-9 * _scale(engine)


def test_beyond_the_rank_limit_the_version_is_built_and_says_so() -> None:
    # d = 24 at the fraction 1/4: rank 2P + 1 <= 6, so three pending rows are too many.
    rng, basis, mu, sigma, pool = _problem(4, d=24, n=200)
    settings = QuadratureSettings(max_pending_fraction=0.25)
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=settings)
    first = engine.append(features(rng, 2, basis, 0.4))
    assert first.method == "lowrank" and engine.built_version == 0
    second = engine.append(features(rng, 1, basis, 0.4))
    assert second.method == "exact" and second.pending_rows == 0
    assert engine.built_version == engine.version == 2 and engine.rebuilds == 1
    assert abs(second.base_fd - _fresh(engine, mu, sigma).base_fd) <= 1e-10 * _scale(engine)
    # A reward request whose pending rows push a group beyond the limit builds the head first.
    engine.append(features(rng, 2, basis, 0.4))
    groups = features(rng, 2, basis, 0.3).reshape(2, 1, -1)
    result = engine.rewards(groups, seed=1)
    assert result.methods_used == ("lowrank", "lowrank") and engine.pending_rows == 0
    assert result.version == engine.built_version == 3


def test_commits_stay_certified_past_the_reward_limit_and_rewards_build_the_head() -> None:
    # d = 24: rewards' rank limit 6 (P <= 2), commits' 12 (P <= 5). Five pending rows are
    # certified commits; a reward request then builds the head before it is served.
    rng, basis, mu, sigma, pool = _problem(14, d=24, n=200)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    for _ in range(5):
        committed = engine.append(features(rng, 1, basis, 0.4))
        assert committed.method == "lowrank"
        assert abs(committed.base_fd - _held_fd(engine, mu, sigma)) <= 1e-9 * _scale(engine)
    assert engine.pending_rows == 5 and engine.built_version == 0
    assert engine.append(features(rng, 1, basis, 0.4)).method == "exact"  # P = 6: built
    engine.append(features(rng, 2, basis, 0.4))
    result = engine.rewards(features(rng, 2, basis, 0.3).reshape(2, 1, -1), seed=3)
    assert result.version == engine.built_version == engine.version == 7


def test_commit_still_returns_a_built_version() -> None:
    rng, basis, mu, sigma, pool = _problem(5)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    assert engine.commit(features(rng, 4, basis, 0.4)) == 1
    assert engine.built_version == 1 and engine.pending_rows == 0


# ---------------------------------------------------------------- statistics that keep digits
@pytest.mark.parametrize("offset", [0.0, 1e2, 1e4])
def test_rewards_far_from_the_origin_stay_within_the_stated_bound(offset: float) -> None:
    rng = np.random.default_rng(6)
    d, n = 16, 400
    mu, sigma = target_of(rng, d, 1e2)
    basis = spectrum_basis(rng, d, 10.0)
    pool = features(rng, n, basis, 0.1) + offset
    groups = features(rng, 4 * 3, basis * 1.1, 0.15).reshape(4, 3, -1) + offset
    engine = RewardEngine(mu + offset, sigma, pool, device="cpu")
    engine.commit(features(rng, 5, basis, 0.2) + offset)
    held = engine.pool()

    def two_pass_fd(rows: np.ndarray) -> float:
        return scipy_fd(rows.mean(0), np.cov(rows, rowvar=False), mu + offset, sigma)

    base = two_pass_fd(held)
    bound = 1e-11 * max(1.0, base)
    assert abs(engine.base_fd - base) <= bound
    for method in ("lowrank", "exact"):
        result = engine.rewards(groups, seed=2, method=method)
        expected = []
        for group, rows in zip(groups, result.indices, strict=True):
            modified = held.copy()
            modified[rows] = group
            expected.append(base - two_pass_fd(modified))
        allowed = np.maximum(1e-8 * np.abs(result.rewards), bound)
        assert np.all(np.abs(result.rewards - np.array(expected)) <= allowed), (
            method,
            result.rewards - np.array(expected),
        )


@pytest.mark.parametrize("scale", [1e6, 1e18, MAX_FEATURE_MAGNITUDE])
@pytest.mark.parametrize("schedule", ["append", "commit", "built_after_large"])
def test_rows_pushed_through_the_ring_leave_no_trace(scale: float, schedule: str) -> None:
    rng, basis, mu, sigma, pool = _problem(7, d=16, n=400, offset=0.0)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    large = np.full((4, 16), scale) * np.sign(rng.normal(size=(4, 16)))
    step = engine.commit if schedule == "commit" else engine.append
    step(large)
    if schedule == "built_after_large":
        engine.rebuild()
    assert engine.base_fd == pytest.approx(_held_fd(engine, mu, sigma), rel=1e-9)
    for _ in range(8):  # 400 normal rows: the large ones are pushed out
        step(features(rng, 50, basis, 0.0))
        assert engine.base_fd == pytest.approx(_held_fd(engine, mu, sigma), rel=1e-9)
    engine.rebuild()
    held = engine.pool()
    assert np.abs(held).max() < 100.0
    assert engine.base_fd == pytest.approx(_held_fd(engine, mu, sigma), rel=1e-9)
    statistics = engine.statistics()
    centred = held - statistics.shift
    scatter = np.trace(np.cov(held, rowvar=False)) * (len(held) - 1)
    assert np.abs(statistics.gram - centred.T @ centred).max() <= 1e-12 * scatter
    # A replica loading the state (statistics included) serves the same base FD.
    clone = RewardEngine.from_state_dict(engine.state_dict(), device="cpu")
    assert clone.base_fd == pytest.approx(engine.base_fd, rel=1e-12)


def test_features_beyond_the_magnitude_bound_are_refused_and_change_nothing() -> None:
    *_, mu, sigma, pool = _problem(8, d=8, n=50)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    too_large = np.full((2, 8), 10 * MAX_FEATURE_MAGNITUDE)
    with pytest.raises(ValueError, match="beyond"):
        engine.append(too_large)
    with pytest.raises(ValueError, match="beyond"):
        engine.rewards(too_large[None])
    with pytest.raises(ValueError, match="beyond"):
        RewardEngine(mu, sigma, np.vstack([pool, too_large]), device="cpu")
    assert engine.version == 0 and engine.cursor == 0
    np.testing.assert_array_equal(engine.pool(), pool)


def test_statistics_are_kept_about_a_shift_and_persisted_with_it() -> None:
    rng, basis, mu, sigma, pool = _problem(9, d=8, n=60, offset=1e4)
    engine = RewardEngine(mu + 1e4, sigma, pool, device="cpu")
    engine.commit(features(rng, 7, basis, 1e4))
    state = engine.state_dict()
    statistics = engine.statistics()
    np.testing.assert_array_equal(state["shift"], statistics.shift)
    np.testing.assert_allclose(statistics.shift, engine.pool().mean(0), rtol=1e-3)
    covariance = (statistics.gram - np.outer(statistics.total, statistics.total) / 60) / 59
    np.testing.assert_allclose(covariance, np.cov(engine.pool(), rowvar=False), rtol=1e-9)
    raw = dict(state, sum=engine.pool().sum(0), gram=engine.pool().T @ engine.pool())
    del raw["shift"]  # raw sums of an older state: recomputed from the rows, not trusted
    assert RewardEngine.from_state_dict(raw, device="cpu").base_fd == pytest.approx(
        engine.base_fd, rel=1e-10
    )


# ---------------------------------------------------------------- per-sample credit
@pytest.mark.parametrize("pending", [0, 4])
def test_per_sample_credits_equal_a_from_scratch_recompute(pending: int) -> None:
    rng, basis, mu, sigma, pool = _problem(10, d=24, n=300)
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=WIDE_RANK)
    if pending:
        engine.append(features(rng, pending, basis, 0.3))
    samples = features(rng, 64, basis * 1.2, 0.25)
    result = engine.credits(samples, form="replace", seed=3)
    assert result.row is not None
    assert result.methods_used == ("lowrank",) * 64 and result.version == engine.version
    held = engine.pool()

    def two_pass_fd(rows: np.ndarray) -> float:
        return scipy_fd(rows.mean(0), np.cov(rows, rowvar=False), mu, sigma)

    base = two_pass_fd(held)
    expected = []
    for sample in samples:
        modified = held.copy()
        modified[result.row] = sample
        expected.append(base - two_pass_fd(modified))
    scale = max(1.0, base)
    np.testing.assert_allclose(result.rewards, expected, rtol=0, atol=1e-9 * scale)
    chosen = engine.credits(samples[:8], form="replace", row=17, method="exact")
    assert chosen.row == 17 and chosen.methods_used == ("exact",) * 8
    with pytest.raises(ValueError, match=r"shape \(B, 24\)"):
        engine.credits(samples[None])


def test_a_thousand_credits_are_one_batched_request() -> None:
    rng, basis, mu, sigma, pool = _problem(11, d=32, n=400)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    samples = features(rng, 1024, basis, 0.25)
    result = engine.credits(samples, form="replace", seed=0)
    assert result.rewards.shape == (1024,) and result.methods_used == ("lowrank",) * 1024
    few = engine.credits(samples[:5], form="replace", seed=0)
    np.testing.assert_allclose(few.rewards, result.rewards[:5], rtol=1e-9, atol=1e-12)
