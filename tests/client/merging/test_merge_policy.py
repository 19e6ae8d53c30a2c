"""The coefficient policy: parametrisations, and updates that climb a synthetic reward."""

from __future__ import annotations

import pytest
import torch

from reward_client.merging.policy import CoefficientPolicy, Kind, PolicyConfig, helmert, policy_step
from reward_client.training.sources import normalise


def test_helmert_basis_is_orthonormal_and_sums_to_zero() -> None:
    basis = helmert(6)
    torch.testing.assert_close(basis.T @ basis, torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(basis.sum(dim=0), torch.zeros(5, dtype=torch.float64))


@pytest.mark.parametrize(
    ("kind", "weights"),
    [("simplex", [0.1, 0.2, 0.3, 0.4]), ("affine", [-0.5, 0.25, 0.5, 0.75])],
)
def test_parameters_round_trip_to_the_initial_weights(kind: Kind, weights: list[float]) -> None:
    w = torch.tensor(weights, dtype=torch.float64)
    policy = CoefficientPolicy(4, PolicyConfig(kind=kind), init_weights=w)
    assert policy.dim == (4 if kind == "simplex" else 3)
    torch.testing.assert_close(policy.mean_weights(), w)
    samples = policy.weights(policy.sample(8, torch.Generator().manual_seed(0)))
    torch.testing.assert_close(samples.sum(dim=1), torch.ones(8, dtype=torch.float64))
    assert (samples > 0).all() if kind == "simplex" else (samples < 0).any()


def test_antithetic_samples_are_mirrored_pairs() -> None:
    policy = CoefficientPolicy(3, PolicyConfig(kind="affine"))
    z = policy.sample(6, torch.Generator().manual_seed(1))
    torch.testing.assert_close(z[:3] + z[3:], 2 * policy.mean.detach().expand(3, -1))
    with pytest.raises(ValueError, match="even"):
        policy.sample(5)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        CoefficientPolicy(2, PolicyConfig(kind="simplex"), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="sum to 1"):
        CoefficientPolicy(2, PolicyConfig(kind="affine"), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="too few"):
        CoefficientPolicy(1, PolicyConfig(kind="affine"))
    with pytest.raises(ValueError, match="kind"):
        PolicyConfig(kind="cube")  # type: ignore[arg-type]


def test_log_prob_is_the_diagonal_gaussian_density() -> None:
    policy = CoefficientPolicy(3, PolicyConfig(kind="simplex", init_std=0.5))
    z = policy.sample(4, torch.Generator().manual_seed(2))
    normal = torch.distributions.Normal(policy.mean.detach(), torch.full((3,), 0.5))
    torch.testing.assert_close(policy.log_prob(z).detach(), normal.log_prob(z).sum(dim=1))


@pytest.mark.parametrize("kind", ["simplex", "affine"])
@pytest.mark.parametrize("epochs", [1, 4])
def test_updates_move_the_mean_toward_the_higher_reward_vector(kind: Kind, epochs: int) -> None:
    """Synthetic reward ``-|w - w*|^2``: the mean's weights approach ``w*`` from uniform."""
    best = torch.tensor([0.05, 0.15, 0.2, 0.6], dtype=torch.float64)
    config = PolicyConfig(kind=kind, init_std=0.3, lr=0.05, epochs=epochs)
    policy = CoefficientPolicy(4, config)
    optimizer = torch.optim.Adam([policy.mean, policy.log_std], lr=config.lr)
    generator = torch.Generator().manual_seed(0)
    start = float((policy.mean_weights() - best).norm())
    for _ in range(150):
        z = policy.sample(8, generator)
        rewards = -((policy.weights(z) - best) ** 2).sum(dim=1)
        policy_step(policy, optimizer, z, torch.as_tensor(normalise(rewards.numpy())), config)
    assert float((policy.mean_weights() - best).norm()) < 0.25 * start


def test_one_reinforce_step_follows_the_reward_gradient() -> None:
    """Two mirrored samples, the better one along +e_0: the mean moves along +e_0 only."""
    config = PolicyConfig(kind="affine", learn_std=False, lr=0.1)
    policy = CoefficientPolicy(3, config)
    optimizer = torch.optim.SGD([policy.mean], lr=config.lr)
    step = torch.tensor([[0.3, 0.0], [-0.3, 0.0]], dtype=torch.float64)
    before = policy.mean.detach().clone()
    stats = policy_step(policy, optimizer, before + step, torch.tensor([1.0, -1.0]), config)
    moved = policy.mean.detach() - before
    assert moved[0] > 0 and moved[1] == 0
    assert stats.approx_kl == 0.0 and stats.clip_fraction == 0.0
