"""PPO-clip loss: gradient signs, clipping, and a policy update that follows the advantages."""

from __future__ import annotations

import pytest
import torch
from trainer_toy import AffineVelocity, ConditionalAffine

from reward_client.grpo.update import GRPOConfig, policy_update
from reward_client.training.ppo import ppo_clip_loss
from reward_client.training.sde import SDEConfig, sample_sde, step_log_prob


def _grad(ratio: float, advantage: float, clip: float = 0.2) -> tuple[float, float]:
    """Loss and d loss / d log-prob of one action with the given ratio and advantage."""
    log_prob = torch.tensor([float(torch.log(torch.tensor(ratio)))], requires_grad=True)
    loss, _ = ppo_clip_loss(log_prob, torch.zeros(1), torch.tensor([advantage]), clip)
    loss.backward()
    assert log_prob.grad is not None
    return float(loss.detach()), float(log_prob.grad[0])


@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_gradient_descent_moves_log_prob_with_the_advantage(advantage: float) -> None:
    loss, grad = _grad(1.0, advantage)
    assert loss == pytest.approx(-advantage)
    # d loss / d log pi = -A r: descent raises log pi when A > 0 and lowers it when A < 0.
    assert grad == pytest.approx(-advantage)


@pytest.mark.parametrize(
    ("ratio", "advantage", "clipped"),
    [
        (1.5, 1.0, True),  # already more likely than allowed, and A > 0: no further push
        (0.5, -1.0, True),  # already less likely than allowed, and A < 0: no further push
        (1.5, -1.0, False),  # moved the wrong way: the unclipped term keeps pulling back
        (0.5, 1.0, False),
        (1.1, 1.0, False),  # inside the trust region
    ],
)
def test_clipping_zeroes_the_gradient_only_in_the_favoured_direction(
    ratio: float, advantage: float, clipped: bool
) -> None:
    loss, grad = _grad(ratio, advantage)
    if clipped:
        assert grad == 0.0
        assert loss == pytest.approx(-(1 + 0.2 * (1 if advantage > 0 else -1)) * advantage)
    else:
        assert grad == pytest.approx(-advantage * ratio)
        assert loss == pytest.approx(-ratio * advantage)


def test_clip_fraction_counts_ratios_outside_the_band() -> None:
    log_prob = torch.log(torch.tensor([1.0, 1.3, 0.7, 1.1]))
    _, fraction = ppo_clip_loss(log_prob, torch.zeros(4), torch.ones(4), 0.2)
    assert float(fraction) == pytest.approx(0.5)


def test_policy_update_raises_log_prob_of_advantaged_samples() -> None:
    torch.manual_seed(0)
    policy = AffineVelocity(4)
    sde = SDEConfig(steps=5, noise=0.5)
    traj = sample_sde(policy, torch.randn(64, 4), sde, torch.Generator().manual_seed(0))
    advantages = torch.where(torch.arange(64) < 32, 1.0, -1.0)
    optimizer = torch.optim.SGD(policy.parameters(), lr=1e-3)
    stats = policy_update(
        policy, optimizer, traj, advantages, sde, GRPOConfig(minibatches=2, epochs=2)
    )
    assert stats.approx_kl == stats.approx_kl  # finite
    with torch.no_grad():
        new = torch.stack(
            [
                step_log_prob(
                    policy,
                    traj.states[k],
                    traj.states[k + 1],
                    traj.times[k].expand(64),
                    (traj.times[k + 1] - traj.times[k]).expand(64),
                    sde,
                )
                for k in range(traj.log_probs.shape[0])
            ]
        )
    change = (new - traj.log_probs).sum(0)
    assert change[:32].mean() > 0 > change[32:].mean()


def test_conditional_update_scores_each_transition_under_its_own_sample_condition() -> None:
    # With a zero step size the policy never moves, so every minibatch's recomputed
    # log-probabilities equal the sampled ones exactly, but only if each transition is scored
    # under the label of the sample it belongs to (a shuffled or misaligned label changes them).
    torch.manual_seed(0)
    policy = ConditionalAffine(4, classes=3)
    with torch.no_grad():
        policy.shift.weight.mul_(5.0)  # labels far apart: a wrong one is a large error
    sde = SDEConfig(steps=5, noise=0.5)
    labels = torch.arange(30) % 3
    traj = sample_sde(policy, torch.randn(30, 4), sde, torch.Generator().manual_seed(0), labels)
    assert traj.cond is labels
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)
    stats = policy_update(
        policy, optimizer, traj, torch.randn(30), sde, GRPOConfig(minibatches=4, epochs=2)
    )
    assert stats.approx_kl == 0.0 and stats.clip_fraction == 0.0
    shuffled = traj.__class__(traj.states, traj.times, traj.log_probs, labels.roll(1))
    wrong = policy_update(
        policy, optimizer, shuffled, torch.randn(30), sde, GRPOConfig(minibatches=4)
    )
    assert abs(wrong.approx_kl) > 1.0
