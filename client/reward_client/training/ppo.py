"""The PPO-clip objective and optimizer step that every trainer's policy update is built from.

With the importance ratio ``r = exp(log pi_theta - log pi_old)`` of an action sampled by the old
policy and its advantage ``A``, the clipped surrogate (Schulman et al. 2017) is::

    L(theta) = -mean min(r A, clip(r, 1 - eps, 1 + eps) A)

Minimising ``L`` raises the log-probability of actions with ``A > 0`` and lowers it for
``A < 0``; once a ratio leaves ``[1 - eps, 1 + eps]`` in the direction the advantage favours,
its gradient is zero, which keeps each update close to the sampling policy. At ``r = 1`` (the
first step on fresh samples) the gradient is REINFORCE's, ``-mean A grad log pi``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["StepStats", "UpdateStats", "ppo_clip_loss", "ppo_step"]

StepStats = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Loss, clip fraction and approximate KL of one optimizer step (0-d tensors)."""


@dataclass(frozen=True)
class UpdateStats:
    """Averages over the optimizer steps of one update."""

    loss: float
    clip_fraction: float
    approx_kl: float

    @classmethod
    def mean(cls, steps: Sequence[StepStats]) -> UpdateStats:
        """The mean of each column of :func:`ppo_step` results."""
        losses, clip_fractions, kls = zip(*steps, strict=True)
        return cls(
            loss=float(torch.stack(losses).mean()),
            clip_fraction=float(torch.stack(clip_fractions).mean()),
            approx_kl=float(torch.stack(kls).mean()),
        )


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


def ppo_step(
    optimizer: torch.optim.Optimizer,
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    max_grad_norm: float = 0.0,
) -> StepStats:
    """One optimizer step on :func:`ppo_clip_loss` of ``log_prob`` (differentiable in the
    optimizer's parameters); the gradient norm is clipped to ``max_grad_norm`` (0: not)."""
    loss, clip_fraction = ppo_clip_loss(log_prob, old_log_prob, advantages, clip)
    optimizer.zero_grad(set_to_none=True)
    torch.autograd.backward(loss)
    if max_grad_norm > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    # k1 estimator of KL(old || new) on the sampled actions.
    approx_kl = (old_log_prob - log_prob.detach()).mean()
    return loss.detach(), clip_fraction, approx_kl
