"""Property tests: the low-rank path against the exact path over generated problems.

Well-posed problems (pool N > d, target condition up to 1e6, K from 1 to N): ``lowrank`` equals
``exact`` to 1e-6 relative or 1e-9 x max(1, FD_0) absolute -- the fast path's accuracy
guarantee. Ill-posed problems (N <= d, target condition up to 1e12, duplicate rows, identical
distributions): both paths stay finite and agree to 1e-6 x max(1, FD_0); that floor is the
exact path's own, since eigenvalues of a near-singular ``M`` below ~1e-16 lambda_max are round-off
whose square roots add about ``d sqrt(1e-16 lambda_max)``. Where ``M`` is numerically singular the
low-rank path must not certify anything and must say so (``methods_used``).
"""

from __future__ import annotations

import numpy as np
from engine_data import features, spectrum_basis, target_of
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reward_service.engine import QuadratureSettings, RewardEngine

ALL_LOW_RANK = QuadratureSettings(max_rank_fraction=1.0)

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def well_posed(draw: st.DrawFn) -> dict:
    d = draw(st.one_of(st.integers(2, 64), st.integers(65, 512)))
    n = d + draw(st.integers(1, 3 * d + 50))
    size = draw(st.one_of(st.integers(1, max(1, (d - 1) // 2)), st.integers(1, n)))
    return {
        "d": d,
        "n": n,
        "size": size,
        "groups": draw(st.integers(1, 4)),
        "condition": 10 ** draw(st.floats(0.0, 6.0)),
        "pool_condition": 10 ** draw(st.floats(0.0, 3.0)),
        "offset": draw(st.floats(-2.0, 2.0)),
        "spread": draw(st.floats(0.5, 2.0)),
        "mode": draw(st.sampled_from(["shared", "independent"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _both_methods(problem: dict, pool: np.ndarray, groups: np.ndarray, rng_seed: int):
    rng = np.random.default_rng(rng_seed)
    mu, sigma = target_of(rng, problem["d"], problem["condition"])
    # Routing by cost sends groups of rank 2K + 1 > d/4 to the exact path; here the quadrature
    # runs wherever the update is low-rank at all, so its accuracy is what is tested.
    engine = RewardEngine(mu, sigma, pool, device="cpu", quadrature=ALL_LOW_RANK)
    fast = engine.rewards(groups, mode=problem["mode"], seed=problem["seed"])
    exact = engine.rewards(groups, mode=problem["mode"], seed=problem["seed"], method="exact")
    return engine, fast, exact


@PROPERTY_SETTINGS
@given(well_posed())
def test_lowrank_equals_exact_on_well_posed_problems(problem: dict) -> None:
    rng = np.random.default_rng(problem["seed"])
    basis = spectrum_basis(rng, problem["d"], problem["pool_condition"])
    pool = features(rng, problem["n"], basis, problem["offset"])
    count, size = problem["groups"], problem["size"]
    groups = features(rng, count * size, basis * problem["spread"], problem["offset"] + 0.1)
    engine, fast, exact = _both_methods(problem, pool, groups.reshape(count, size, -1), 1)
    np.testing.assert_array_equal(fast.indices, exact.indices)
    event("path: " + "+".join(sorted(set(fast.methods_used))))
    tolerance = np.maximum(1e-6 * np.abs(exact.rewards), 1e-9 * max(1.0, engine.base_fd))
    assert np.all(np.abs(fast.rewards - exact.rewards) <= tolerance), (
        fast.rewards,
        exact.rewards,
        fast.methods_used,
    )
    np.testing.assert_allclose(
        fast.fds, engine.base_fd - fast.rewards, rtol=0, atol=1e-12 * max(1.0, engine.base_fd)
    )


@st.composite
def ill_posed(draw: st.DrawFn) -> dict:
    d = draw(st.integers(2, 256))
    kind = draw(st.sampled_from(["few_rows", "duplicates", "identical", "conditioned"]))
    n = draw(st.integers(2, d)) if kind == "few_rows" else d + draw(st.integers(1, 2 * d + 10))
    return {
        "d": d,
        "n": n,
        "kind": kind,
        "size": draw(st.integers(1, n)),
        "groups": draw(st.integers(1, 3)),
        "condition": 10 ** draw(st.floats(0.0, 12.0)),
        "mode": draw(st.sampled_from(["shared", "independent"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@PROPERTY_SETTINGS
@given(ill_posed())
def test_both_paths_stay_finite_and_agree_on_ill_posed_problems(problem: dict) -> None:
    rng = np.random.default_rng(problem["seed"])
    d, n, kind = problem["d"], problem["n"], problem["kind"]
    basis = spectrum_basis(rng, d, 100.0)
    count, size = problem["groups"], problem["size"]
    if kind == "duplicates":
        distinct = features(rng, max(2, min(n // 3, d // 2)), basis, 0.0)
        pool = distinct[rng.integers(0, distinct.shape[0], size=n)]
    elif kind == "conditioned":
        pool = features(rng, n, spectrum_basis(rng, d, problem["condition"]), 0.0)
    else:
        pool = features(rng, n, basis, 0.0)
    if kind == "identical":
        # Groups drawn from the pool itself: the distributions are the same.
        groups = pool[rng.integers(0, n, size=(count, size))]
    else:
        groups = features(rng, count * size, basis, 0.2).reshape(count, size, d)
    engine, fast, exact = _both_methods(problem, pool, groups, 2)
    assert np.isfinite(engine.base_fd)
    for result in (fast, exact):
        assert np.all(np.isfinite(result.rewards)) and np.all(np.isfinite(result.fds))
    event(f"{kind}, path: " + "+".join(sorted(set(fast.methods_used))))
    scale = max(1.0, engine.base_fd)
    assert np.all(np.abs(fast.rewards - exact.rewards) <= 1e-6 * scale)
    if kind == "few_rows":
        # M = A S A has rank < d: nothing may be certified, and the result says so.
        assert fast.methods_used == ("exact",) * count
        np.testing.assert_array_equal(fast.rewards, exact.rewards)
