"""GRPO / PPO-clip policy update over stored SDE trajectories (Flow-GRPO style).

Every noisy transition ``k`` of every sample ``i`` is one action with the sample's advantage
``A_i``, scored by the clipped surrogate of :mod:`reward_client.training.ppo` with the ratio
``r = exp(log pi_theta - log pi_old)`` of that transition. The trajectories are split into
minibatches and each takes one optimizer step, so later minibatches see ratios != 1. A
conditional trajectory's conditions go with their samples into every minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..training.ppo import StepStats, UpdateStats, ppo_step
from ..training.sde import SDEConfig, Trajectory, step_log_prob

__all__ = ["GRPOConfig", "policy_update"]


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
    steps: list[StepStats] = []
    for _ in range(config.epochs):
        order = torch.randperm(batch, generator=generator)
        for idx in order.chunk(config.minibatches):
            x = trajectory.states[:noisy_steps, idx]
            x_next = trajectory.states[1 : noisy_steps + 1, idx]
            b = idx.numel()
            t = times[:noisy_steps].repeat_interleave(b)
            step_dt = dt[:noisy_steps].repeat_interleave(b)
            # Step-major like x.flatten(0, 1): transition s of sample idx[j] is row s * b + j.
            cond = trajectory.cond
            if cond is not None:
                cond = cond[idx].repeat(noisy_steps, *(1,) * (cond.dim() - 1))
            log_prob = step_log_prob(
                policy, x.flatten(0, 1), x_next.flatten(0, 1), t, step_dt, sde, cond
            ).reshape(noisy_steps, b)
            old = trajectory.log_probs[:, idx]
            step = ppo_step(
                optimizer, log_prob, old, advantages[idx], config.clip, config.max_grad_norm
            )
            steps.append(step)
    return UpdateStats.mean(steps)
