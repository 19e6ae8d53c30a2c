"""The SDE sampler keeps the ODE's marginals; its transition log-probabilities are Gaussian."""

from __future__ import annotations

import math

import pytest
import torch
from trainer_toy import AffineVelocity, GaussianVelocity

from reward_client.training.sde import (
    SDEConfig,
    gaussian_log_prob,
    sample_ode,
    sample_sde,
    step_log_prob,
    time_grid,
    transition,
)

N = 40_000
MEAN = torch.tensor([1.5, -0.5])
STD = torch.tensor([0.3, 2.0])


@pytest.fixture
def exact() -> GaussianVelocity:
    return GaussianVelocity(MEAN, STD)


def _noise(n: int = N, dim: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, dim), generator=torch.Generator().manual_seed(seed))


def _max_errors(states: torch.Tensor, times: torch.Tensor, model: GaussianVelocity):
    """Worst mean error in standard errors and worst relative variance error over the grid."""
    mean_z, var_rel = 0.0, 0.0
    for x, t in zip(states, times, strict=True):
        var = model.marginal_var(t)
        mean_z = max(mean_z, float(((x.mean(0) - t * MEAN).abs() / (var / len(x)).sqrt()).max()))
        var_rel = max(var_rel, float(((x.var(0) - var).abs() / var).max()))
    return mean_z, var_rel


# Tolerances: the Monte-Carlo standard error of a variance is sqrt(2 / N) = 0.7% relative, and
# Euler–Maruyama's O(dt) bias measured ~2.4% at 200 steps and ~1.2% at 400 on this problem; 3%
# at 400 steps covers both with margin, while a sampler without the score correction is off by
# more than 10% (checked below, so the test can fail).
STEPS = 400
VAR_TOL = 0.03
MEAN_TOL_SE = 5.0


@pytest.mark.parametrize("noise", [0.3, 1.0])
def test_sde_marginals_match_the_exact_marginals(exact: GaussianVelocity, noise: float) -> None:
    config = SDEConfig(steps=STEPS, noise=noise, min_one_minus_t=1e-3)
    traj = sample_sde(exact, _noise(), config, torch.Generator().manual_seed(1))
    mean_z, var_rel = _max_errors(traj.states, traj.times, exact)
    # Mean: MC error plus a discretisation bias of ~1e-3 absolute.
    assert mean_z < MEAN_TOL_SE + 1e-2 * math.sqrt(N)
    assert var_rel < VAR_TOL


def test_ode_marginals_match_the_exact_marginals(exact: GaussianVelocity) -> None:
    x = sample_ode(exact, _noise(), STEPS)
    var_rel = float(((x.var(0) - STD**2).abs() / STD**2).max())
    assert var_rel < VAR_TOL
    assert torch.allclose(x.mean(0), MEAN, atol=0.05)


def test_noise_without_score_correction_breaks_the_marginals(exact: GaussianVelocity) -> None:
    """Power check: plain Euler–Maruyama noise ``dx = v dt + s dW`` inflates the variance."""
    s, times, x = 1.0, time_grid(STEPS), _noise()
    gen = torch.Generator().manual_seed(1)
    for k in range(STEPS):
        dt = times[k + 1] - times[k]
        x = x + exact(x, times[k].expand(len(x))) * dt
        if k < STEPS - 1:
            x = x + s * dt.sqrt() * torch.randn(x.shape, generator=gen)
    var_rel = float(((x.var(0) - STD**2).abs() / STD**2).max())
    assert var_rel > 0.1


def test_transition_follows_the_formula(exact: GaussianVelocity) -> None:
    config = SDEConfig(steps=10, noise=0.5, min_one_minus_t=0.05)
    x = _noise(8)
    t = torch.full((8,), 0.3)
    dt = torch.full((8,), 0.1)
    mean, std = transition(exact, x, t, dt, config)
    v = exact(x, t)
    score = -(x - 0.3 * v) / 0.7
    assert torch.allclose(mean, x + (v + 0.125 * score) * 0.1, atol=1e-6)
    assert torch.allclose(std, torch.full((8, 1), 0.5 * math.sqrt(0.1)))
    # Clipping: at t = 0.99, 1 - t is replaced by 0.05.
    t_late = torch.full((8,), 0.99)
    mean_late, _ = transition(exact, x, t_late, dt, config)
    v_late = exact(x, t_late)
    expected = x + (v_late - 0.125 * (x - 0.99 * v_late) / 0.05) * 0.1
    assert torch.allclose(mean_late, expected, atol=1e-5)


def test_step_log_prob_is_the_gaussian_density() -> None:
    model = AffineVelocity(3)
    config = SDEConfig(steps=10, noise=0.3)
    x, x_next = _noise(5, 3, seed=2), _noise(5, 3, seed=3)
    t, dt = torch.full((5,), 0.2), torch.full((5,), 0.1)
    mean, std = transition(model, x, t, dt, config)
    expected = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(x_next).sum(1)
    got = step_log_prob(model, x, x_next, t, dt, config)
    assert torch.allclose(got, expected, atol=1e-4)
    # The closed form, written out: -|x' - mu|^2 / (2 s^2 dt) - (D / 2) log(2 pi s^2 dt).
    var = 0.09 * 0.1
    closed = -((x_next - mean) ** 2).sum(1) / (2 * var) - 1.5 * math.log(2 * math.pi * var)
    assert torch.allclose(got, closed, atol=1e-3)


def test_trajectory_log_probs_match_recomputation() -> None:
    model = AffineVelocity(3)
    config = SDEConfig(steps=6, noise=0.4)
    traj = sample_sde(model, _noise(7, 3), config, torch.Generator().manual_seed(0))
    assert traj.states.shape == (7, 7, 3)
    assert traj.log_probs.shape == (5, 7)
    for k in range(5):
        t = traj.times[k].expand(7)
        dt = (traj.times[k + 1] - traj.times[k]).expand(7)
        recomputed = step_log_prob(model, traj.states[k], traj.states[k + 1], t, dt, config)
        assert torch.allclose(recomputed, traj.log_probs[k], atol=1e-4)
    # The last step is the deterministic ODE step.
    with torch.no_grad():
        t_last = traj.times[-2].expand(7)
        v = model(traj.states[-2], t_last)
    assert torch.allclose(traj.samples, traj.states[-2] + v * (1 / 6), atol=1e-6)


def test_gaussian_log_prob_sums_over_all_sample_axes() -> None:
    x = torch.zeros(2, 1, 2, 2)
    lp = gaussian_log_prob(x, torch.zeros_like(x), torch.ones(2, 1, 1, 1))
    assert torch.allclose(lp, torch.full((2,), -2 * math.log(2 * math.pi)))


@pytest.mark.parametrize(
    "kwargs", [{"steps": 0}, {"noise": 0.0}, {"min_one_minus_t": 0.0}, {"min_one_minus_t": 1.5}]
)
def test_config_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SDEConfig(**kwargs)  # type: ignore[arg-type]
