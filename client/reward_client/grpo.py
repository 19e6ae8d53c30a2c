"""GRPO / PPO-clip policy update over stored SDE trajectories (Flow-GRPO style).

Every noisy transition ``k`` of every sample ``i`` is one action with the sample's advantage
``A_i``. With the importance ratio ``r = exp(log pi_theta - log pi_old)`` of that transition, the
clipped surrogate (Schulman et al. 2017) is::

    L(theta) = -mean_{i,k} min(r A_i, clip(r, 1 - eps, 1 + eps) A_i)

Minimising ``L`` raises the log-probability of transitions with ``A > 0`` and lowers it for
``A < 0``; once a ratio leaves ``[1 - eps, 1 + eps]`` in the direction the advantage favours,
its gradient is zero, which keeps each update close to the sampling policy. The trajectories are
split into minibatches and each takes one optimizer step, so later minibatches see ratios != 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .sde import SDEConfig, Trajectory, step_log_prob

__all__ = ["GRPOConfig", "UpdateStats", "policy_update", "ppo_clip_loss"]


@dataclass(frozen=True)
class GRPOConfig:
    """Policy-update settings.

    Attributes:
        clip: PPO ratio clip ``eps``.
        minibatches: optimizer steps per batch of trajectories (per epoch).
        epochs: passes over the batch.
        adv_clip: advantages are clipped to ``[-adv_clip, adv_clip]``.
        max_grad_norm: gradient-norm clip per optimizer step (0 disables it).
    """

    clip: float = 0.2
    minibatches: int = 4
    epochs: int = 1
    adv_clip: float = 5.0
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class UpdateStats:
    """Averages over the optimizer steps of one update."""

    loss: float
    clip_fraction: float
    approx_kl: float


def ppo_clip_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate ``-mean min(r A, clip(r, 1 - eps, 1 + eps) A)``, ``r = exp(lp - lp_old)``.

    All three tensors broadcast together. Returns the loss and the fraction of clipped ratios.
    """
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * advantages
    loss = -torch.minimum(unclipped, clipped).mean()
    clip_fraction = ((ratio - 1.0).abs() > clip).float().mean()
    return loss, clip_fraction


def policy_update(
    policy: nn.Module,
    optimizer: torch.optim.Optimizer,
    trajectory: Trajectory,
    advantages: torch.Tensor,
    sde: SDEConfig,
    config: GRPOConfig,
    generator: torch.Generator | None = None,
) -> UpdateStats:
    """PPO-clip steps on ``trajectory`` (sampled by the old policy) with per-sample advantages (B,).

    Each minibatch stacks its noisy transitions of all time steps into one forward pass.
    """
    noisy_steps, batch = trajectory.log_probs.shape
    advantages = advantages.clamp(-config.adv_clip, config.adv_clip)
    times = trajectory.times
    dt = times[1:] - times[:-1]
    losses, clip_fractions, kls = [], [], []
    for _ in range(config.epochs):
        order = torch.randperm(batch, generator=generator)
        for idx in order.chunk(config.minibatches):
            x = trajectory.states[:noisy_steps, idx]
            x_next = trajectory.states[1 : noisy_steps + 1, idx]
            b = idx.numel()
            t = times[:noisy_steps].repeat_interleave(b)
            step_dt = dt[:noisy_steps].repeat_interleave(b)
            log_prob = step_log_prob(
                policy, x.flatten(0, 1), x_next.flatten(0, 1), t, step_dt, sde
            ).reshape(noisy_steps, b)
            old = trajectory.log_probs[:, idx]
            loss, clip_fraction = ppo_clip_loss(log_prob, old, advantages[idx], config.clip)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()
            losses.append(loss.detach())
            clip_fractions.append(clip_fraction)
            # k1 estimator of KL(old || new) on the sampled actions.
            kls.append((old - log_prob.detach()).mean())
    return UpdateStats(
        loss=float(torch.stack(losses).mean()),
        clip_fraction=float(torch.stack(clip_fractions).mean()),
        approx_kl=float(torch.stack(kls).mean()),
    )
