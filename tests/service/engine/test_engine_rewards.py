"""RewardEngine: rewards against an independent recompute, the replacement modes, commits and
the rolling pool, state round trips and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_data import features, recomputed_fds, spectrum_basis, target_of

from reward_service.engine import ADVANTAGE_EPSILON, RewardEngine, frechet_distance, gaussian_of


def _setup(seed: int = 0, d: int = 24, n: int = 200, condition: float = 1e3):
    rng = np.random.default_rng(seed)
    mu, sigma = target_of(rng, d, condition)
    basis = spectrum_basis(rng, d, 30.0)
    pool = features(rng, n, basis, 0.2)
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    return rng, basis, mu, sigma, pool, engine


@pytest.mark.parametrize("method", ["exact", "lowrank"])
@pytest.mark.parametrize("mode", ["shared", "independent"])
def test_rewards_equal_a_from_scratch_recompute(method: str, mode: str) -> None:
    rng, basis, mu, sigma, pool, engine = _setup(d=48)
    groups = features(rng, 5 * 4, basis * 1.1, 0.25).reshape(5, 4, -1)
    result = engine.rewards(groups, mode=mode, seed=7, method=method)
    assert result.methods_used == (method,) * 5
    expected_fds = recomputed_fds(pool, groups, result.indices, mu, sigma)
    np.testing.assert_allclose(result.fds, expected_fds, rtol=1e-9)
    np.testing.assert_allclose(result.rewards, engine.base_fd - expected_fds, rtol=1e-7, atol=1e-9)
    assert result.version == 0 and result.base_fd == engine.base_fd


def test_lowrank_is_used_and_certified_on_a_well_posed_pool() -> None:
    rng, basis, *_, engine = _setup(d=64, n=600)
    groups = features(rng, 8 * 6, basis, 0.3).reshape(8, 6, -1)
    fast = engine.rewards(groups, seed=1)
    exact = engine.rewards(groups, seed=1, method="exact")
    assert fast.methods_used == ("lowrank",) * 8
    assert np.all(np.isfinite(fast.error_estimates))
    assert np.all(np.isnan(exact.error_estimates)) and exact.methods_used == ("exact",) * 8
    np.testing.assert_allclose(fast.rewards, exact.rewards, rtol=1e-8, atol=1e-10)


def test_large_groups_go_to_the_exact_path_and_say_so() -> None:
    # Rank 2K + 1 = 21 > d / 4: a d x d eigendecomposition is cheaper than the quadrature.
    rng, basis, *_, engine = _setup(d=24)
    groups = features(rng, 2 * 10, basis, 0.0).reshape(2, 10, -1)
    fast = engine.rewards(groups, seed=4)
    assert fast.methods_used == ("exact", "exact")
    np.testing.assert_array_equal(
        fast.rewards, engine.rewards(groups, seed=4, method="exact").rewards
    )


def test_base_fd_is_the_pool_fd() -> None:
    *_, pool, engine = _setup()
    assert engine.base_fd == pytest.approx(engine.fd(pool), rel=1e-10)
    assert engine.d == 24 and engine.n == 200 and engine.version == 0


def test_every_fd_is_the_same_clamped_formula() -> None:
    # A target fitted to the pool itself: every FD is zero in exact arithmetic, and each path
    # (the module function, the pool's base FD, engine.fd, exact rewards) clamps the round-off
    # the same way instead of returning tiny negative distances.
    rng, basis, *_ = _setup()
    pool = features(rng, 200, basis, 3.0)
    mu, sigma = (t.numpy() for t in gaussian_of(torch.as_tensor(pool)))
    engine = RewardEngine(mu, sigma, pool, device="cpu")
    values = [frechet_distance(mu, sigma, mu, sigma), engine.base_fd, engine.fd(pool)]
    rows = np.array([[0, 1, 2]])
    exact = engine.rewards(pool[rows], mode="indices", indices=rows, method="exact")
    values.append(float(exact.fds[0]))
    assert all(0.0 <= value < 1e-9 for value in values), values
    assert engine.fd(pool[:50]) == pytest.approx(
        frechet_distance(*(t.numpy() for t in gaussian_of(torch.as_tensor(pool[:50]))), mu, sigma),
        rel=1e-12,
    )


def test_shared_mode_replaces_the_same_rows_in_every_group() -> None:
    rng, basis, *_, engine = _setup()
    groups = features(rng, 12, basis, 0.0).reshape(3, 4, -1)
    shared = engine.rewards(groups, mode="shared", seed=3)
    assert (shared.indices == shared.indices[0]).all() and shared.seed == 3
    assert len(set(shared.indices[0].tolist())) == 4
    independent = engine.rewards(groups, mode="independent", seed=3)
    assert not (independent.indices == independent.indices[0]).all()


def test_a_seed_reproduces_everything_and_is_drawn_when_absent() -> None:
    rng, basis, *_, engine = _setup()
    groups = features(rng, 12, basis, 0.0).reshape(3, 4, -1)
    first, second = engine.rewards(groups, seed=11), engine.rewards(groups, seed=11)
    np.testing.assert_array_equal(first.rewards, second.rewards)
    np.testing.assert_array_equal(first.indices, second.indices)
    drawn = engine.rewards(groups)
    assert isinstance(drawn.seed, int)
    replay = engine.rewards(groups, seed=drawn.seed)
    np.testing.assert_array_equal(drawn.rewards, replay.rewards)


def test_explicit_indices_are_used_as_given() -> None:
    rng, basis, mu, sigma, pool, engine = _setup()
    groups = features(rng, 6, basis, 0.0).reshape(2, 3, -1)
    per_group = np.array([[0, 1, 2], [5, 9, 199]])
    result = engine.rewards(groups, mode="indices", indices=per_group)
    np.testing.assert_array_equal(result.indices, per_group)
    assert result.seed is None
    np.testing.assert_allclose(
        result.fds, recomputed_fds(pool, groups, per_group, mu, sigma), rtol=1e-9
    )
    shared = engine.rewards(groups, mode="indices", indices=[3, 4, 5])
    np.testing.assert_array_equal(shared.indices, [[3, 4, 5], [3, 4, 5]])


def test_advantages_are_group_normalised() -> None:
    rng, basis, *_, engine = _setup()
    groups = features(rng, 24, basis, 0.1).reshape(6, 4, -1)
    result = engine.rewards(groups, seed=0)
    expected = (result.rewards - result.rewards.mean()) / (result.rewards.std() + ADVANTAGE_EPSILON)
    np.testing.assert_allclose(result.advantages, expected, rtol=1e-12)
    single = engine.rewards(groups[:1], seed=0)
    assert single.advantages.tolist() == [0.0]


def test_a_group_equal_to_the_rows_it_replaces_earns_nothing() -> None:
    _, _, _, _, pool, engine = _setup()
    rows = np.array([[10, 20, 30, 40]])
    for method in ("lowrank", "exact"):
        result = engine.rewards(pool[rows], mode="indices", indices=rows, method=method)
        assert abs(result.rewards[0]) < 1e-9 * engine.base_fd


def test_torch_and_float32_input_are_accepted() -> None:
    rng, basis, *_, engine = _setup()
    groups = features(rng, 8, basis, 0.0).reshape(2, 4, -1).astype(np.float32)
    from_numpy = engine.rewards(groups, seed=2)
    from_torch = engine.rewards(torch.from_numpy(groups), seed=2)
    np.testing.assert_array_equal(from_numpy.rewards, from_torch.rewards)


# ---------------------------------------------------------------- commits and the rolling pool
def test_commits_roll_the_oldest_rows_and_keep_statistics_exact() -> None:
    rng, basis, _, _, pool, engine = _setup(n=50)
    expected_pool = pool.copy()
    cursor = 0
    for step in range(40):
        size = int(rng.integers(1, 23))
        batch = features(rng, size, basis, 0.5)
        assert engine.commit(batch) == step + 1
        rows = (cursor + np.arange(size)) % 50
        expected_pool[rows] = batch
        cursor = (cursor + size) % 50
    assert engine.version == 40 and engine.cursor == cursor
    np.testing.assert_array_equal(engine.pool(), expected_pool)
    statistics = engine.statistics()
    centred = expected_pool - statistics.shift
    assert statistics.n == 50
    np.testing.assert_allclose(statistics.total, centred.sum(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(statistics.gram, centred.T @ centred, rtol=1e-9, atol=1e-9)
    assert engine.base_fd == pytest.approx(engine.fd(expected_pool), rel=1e-9)


def test_a_commit_of_the_whole_pool_replaces_it() -> None:
    rng, basis, *_, engine = _setup(n=30)
    fresh = features(rng, 30, basis, 1.0)
    engine.commit(fresh)
    np.testing.assert_array_equal(engine.pool(), fresh)
    assert engine.base_fd == pytest.approx(engine.fd(fresh), rel=1e-9)


def test_commit_rewards_use_the_new_version() -> None:
    rng, basis, mu, sigma, _, engine = _setup()
    engine.commit(features(rng, 7, basis, 0.4))
    groups = features(rng, 8, basis, 0.0).reshape(2, 4, -1)
    result = engine.rewards(groups, seed=5, method="exact")
    assert result.version == 1
    expected = recomputed_fds(engine.pool(), groups, result.indices, mu, sigma)
    np.testing.assert_allclose(result.fds, expected, rtol=1e-9)


def test_state_dict_round_trip_gives_identical_rewards() -> None:
    rng, basis, *_, engine = _setup()
    engine.commit(features(rng, 9, basis, 0.4))
    clone = RewardEngine.from_state_dict(engine.state_dict(), device="cpu")
    assert (clone.version, clone.cursor, clone.n) == (engine.version, engine.cursor, engine.n)
    groups = features(rng, 12, basis, 0.0).reshape(3, 4, -1)
    np.testing.assert_array_equal(
        engine.rewards(groups, seed=1).rewards, clone.rewards(groups, seed=1).rewards
    )
    state = engine.state_dict()
    del state["shift"], state["sum"], state["gram"]
    recomputed = RewardEngine.from_state_dict(state, device="cpu")
    assert recomputed.base_fd == pytest.approx(engine.base_fd, rel=1e-10)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("groups", "kwargs", "message"),
    [
        (np.zeros((2, 3)), {}, r"shape \(G, K, 24\)"),
        (np.zeros((2, 3, 5)), {}, r"shape \(G, K, 24\)"),
        (np.zeros((0, 3, 24)), {}, "non-empty"),
        (np.zeros((2, 0, 24)), {}, "non-empty"),
        (np.full((1, 2, 24), np.nan), {}, "NaN or Inf"),
        (np.full((1, 2, 24), np.inf), {}, "NaN or Inf"),
        (np.zeros((1, 201, 24)), {}, "at most N"),
        (np.zeros((1, 2, 24)), {"mode": "sometimes"}, "mode must be one of"),
        (np.zeros((1, 2, 24)), {"method": "fast"}, "method must be one of"),
        (np.zeros((1, 2, 24)), {"mode": "indices"}, "needs indices"),
        (np.zeros((1, 2, 24)), {"mode": "indices", "indices": [1, 1]}, "repeat a row"),
        (np.zeros((1, 2, 24)), {"mode": "indices", "indices": [1, 200]}, r"\[0, 200\)"),
        (np.zeros((1, 2, 24)), {"mode": "indices", "indices": [1, 2, 3]}, "do not fit"),
        (np.zeros((1, 2, 24)), {"mode": "indices", "indices": [0.5, 1.0]}, "integers"),
        (np.zeros((1, 2, 24)), {"indices": [1, 2]}, "only used with mode"),
        (np.zeros((1, 2, 24)), {"seed": -1}, "seed must be"),
        (np.array([[["a"] * 24]]), {}, "real numbers|numeric"),
    ],
)
def test_bad_reward_requests_raise_value_error(groups, kwargs, message) -> None:
    *_, engine = _setup()
    with pytest.raises(ValueError, match=message):
        engine.rewards(groups, **kwargs)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (np.zeros((3, 5)), r"shape \(n, 24\)"),
        (np.zeros((0, 24)), "at least 1 rows"),
        (np.full((2, 24), np.nan), "NaN or Inf"),
        (np.zeros((201, 24)), "exceeds the pool"),
    ],
)
def test_bad_commits_raise_and_change_nothing(batch: np.ndarray, message: str) -> None:
    *_, pool, engine = _setup()
    with pytest.raises(ValueError, match=message):
        engine.commit(batch)
    assert engine.version == 0 and engine.cursor == 0
    np.testing.assert_array_equal(engine.pool(), pool)


def test_bad_construction_raises_value_error() -> None:
    rng = np.random.default_rng(0)
    mu, sigma = target_of(rng, 4, 10.0)
    with pytest.raises(ValueError, match="target_sigma must have shape"):
        RewardEngine(mu, sigma[:3], rng.normal(size=(10, 4)), device="cpu")
    with pytest.raises(ValueError, match="at least 2 rows"):
        RewardEngine(mu, sigma, rng.normal(size=(1, 4)), device="cpu")
    with pytest.raises(ValueError, match="NaN or Inf"):
        RewardEngine(mu * np.nan, sigma, rng.normal(size=(10, 4)), device="cpu")
    with pytest.raises(ValueError, match="at least 2 rows"):
        RewardEngine(mu, sigma, rng.normal(size=(10, 4)), device="cpu").fd(np.zeros((1, 4)))


def test_read_only_input_is_accepted_and_never_aliased() -> None:
    rng, basis, *_, engine = _setup()
    groups = features(rng, 8, basis, 0.0).reshape(2, 4, -1)
    frozen = groups.copy()
    frozen.flags.writeable = False
    expected = engine.rewards(groups, seed=3).rewards
    np.testing.assert_array_equal(engine.rewards(frozen, seed=3).rewards, expected)
    reversed_twice = np.ascontiguousarray(groups[:, ::-1])[:, ::-1]  # negative strides
    np.testing.assert_array_equal(engine.rewards(reversed_twice, seed=3).rewards, expected)
    swapped = groups.astype(groups.dtype.newbyteorder(">"))
    np.testing.assert_array_equal(engine.rewards(swapped, seed=3).rewards, expected)
    batch = features(rng, 3, basis, 0.0)
    kept = batch.copy()
    engine.commit(batch)
    batch[:] = 0.0  # the caller reuses its buffer: the pool must not change with it
    np.testing.assert_array_equal(engine.pool()[:3], kept)
