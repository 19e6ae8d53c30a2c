"""A Gaussian policy over merge coefficients, and its policy-gradient update.

The policy draws parameters ``z ~ N(m, diag(s^2))`` and maps them to the weights ``w`` of the
``n`` checkpoints in one of two ways:

* ``"simplex"`` — softmax logits, ``w = softmax(z)`` (``p = n`` parameters): a convex
  combination, every weight in (0, 1).
* ``"affine"`` — the sum-to-one affine form of EDM2's post-hoc EMA, whose solved coefficients
  may be negative: ``w = 1/n + H z`` with ``H`` (n, n - 1) the Helmert basis of the plane
  ``sum_i v_i = 0`` (orthonormal columns), so every ``z`` in R^(n-1) gives ``sum_i w_i = 1`` and
  an isotropic Gaussian on ``z`` is an isotropic Gaussian on ``w`` within that plane.

Its log-density is ``log pi(z) = -sum_j [(z_j - m_j)^2 / (2 s_j^2) + log s_j + log(2 pi) / 2]``.
The update is PPO-clip (:func:`reward_client.training.ppo.ppo_step`) on group-normalised
advantages ``A_g`` of the G sampled vectors: with ``epochs = 1`` the ratio is 1 at the only
step, and the gradient ``-mean_g A_g grad log pi(z_g)`` is exactly REINFORCE; more epochs reuse
the samples GRPO-style, the clip keeping the policy near the one that drew them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..training.ppo import UpdateStats, ppo_step

__all__ = ["CoefficientPolicy", "Kind", "PolicyConfig", "helmert", "policy_step"]

Kind = Literal["simplex", "affine"]


def helmert(n: int) -> torch.Tensor:
    """Orthonormal basis (n, n - 1) of ``{v : sum v = 0}``, float64.

    Column ``k`` (k = 1..n-1) is ``(1, ..., 1, -k, 0, ..., 0) / sqrt(k (k + 1))`` with k ones.
    """
    basis = torch.zeros(n, n - 1, dtype=torch.float64)
    for k in range(1, n):
        basis[:k, k - 1] = 1.0
        basis[k, k - 1] = -float(k)
        basis[:, k - 1] /= math.sqrt(k * (k + 1))
    return basis


@dataclass(frozen=True)
class PolicyConfig:
    """Policy and update settings.

    Attributes:
        kind: ``"simplex"`` (softmax logits) or ``"affine"`` (sum to one, may be negative).
        init_std: initial standard deviation ``s`` of every parameter.
        min_std: lower clamp of ``s`` (exploration never stops entirely).
        learn_std: adapt ``log s`` by the same gradient as the mean.
        lr: Adam step size of the mean (and of ``log s``).
        epochs: optimizer steps per batch (1: REINFORCE; more: GRPO-style PPO-clip).
        clip: PPO ratio clip ``eps`` (inactive when ``epochs = 1``).
        antithetic: draw mirrored pairs ``m +- s eps`` (G must be even), which cancels the
            reward's constant and linear parts in the mean gradient's noise.
    """

    kind: Kind = "simplex"
    init_std: float = 0.3
    min_std: float = 1e-3
    learn_std: bool = True
    lr: float = 0.05
    epochs: int = 1
    clip: float = 0.2
    antithetic: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("simplex", "affine"):
            raise ValueError(f"kind must be 'simplex' or 'affine', got {self.kind!r}")
        if not 0 < self.min_std <= self.init_std:
            raise ValueError("need 0 < min_std <= init_std")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


class CoefficientPolicy(nn.Module):
    """``N(m, diag(s^2))`` over the parameters of ``count`` merge weights.

    Args:
        count: number of checkpoints ``n``.
        config: parametrisation and initial spread.
        init_weights: the weights the mean starts at (uniform by default); positive for
            ``"simplex"``, summing to one for ``"affine"``.
    """

    basis: torch.Tensor

    def __init__(
        self, count: int, config: PolicyConfig, init_weights: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        if count < 1 or (config.kind == "affine" and count < 2):
            raise ValueError(f"{count} checkpoints are too few for a {config.kind!r} policy")
        self.count = count
        self.kind = config.kind
        self.min_std = config.min_std
        self.register_buffer("basis", helmert(count), persistent=False)
        init = (
            torch.full((count,), 1.0 / count, dtype=torch.float64)
            if init_weights is None
            else torch.as_tensor(init_weights, dtype=torch.float64)
        )
        self.mean = nn.Parameter(self.params_for(init))
        self.log_std = nn.Parameter(
            torch.full_like(self.mean, math.log(config.init_std)), requires_grad=config.learn_std
        )

    @property
    def dim(self) -> int:
        """Number of policy parameters ``p`` (n for simplex, n - 1 for affine)."""
        return int(self.mean.numel())

    def params_for(self, weights: torch.Tensor) -> torch.Tensor:
        """Parameters ``z`` with ``weights(z) = weights`` (float64).

        simplex: ``z = log w - mean(log w)``; affine: ``z = H^T (w - 1/n)``.
        """
        if weights.shape != (self.count,):
            raise ValueError(f"expected {self.count} weights, got shape {tuple(weights.shape)}")
        if self.kind == "simplex":
            if bool((weights <= 0).any()):
                raise ValueError("simplex weights must be positive (softmax never reaches 0)")
            logits = weights.log()
            return logits - logits.mean()
        if not math.isclose(float(weights.sum()), 1.0, abs_tol=1e-9):
            raise ValueError(f"affine weights must sum to 1, got {float(weights.sum())}")
        return self.basis.T @ (weights - 1.0 / self.count)

    def weights(self, params: torch.Tensor) -> torch.Tensor:
        """Merge weights (..., n) of parameters (..., p)."""
        if self.kind == "simplex":
            return params.softmax(dim=-1)
        return 1.0 / self.count + params @ self.basis.T

    def std(self) -> torch.Tensor:
        """``s = exp(log s)``, clamped below at ``min_std``."""
        return self.log_std.clamp_min(math.log(self.min_std)).exp()

    def mean_weights(self) -> torch.Tensor:
        """Weights of the policy's mean: the merge the policy recommends."""
        with torch.no_grad():
            return self.weights(self.mean)

    @torch.no_grad()
    def sample(
        self, count: int, generator: torch.Generator | None = None, antithetic: bool = True
    ) -> torch.Tensor:
        """``count`` parameter vectors (count, p); mirrored pairs when ``antithetic``."""
        if antithetic:
            if count % 2:
                raise ValueError(f"antithetic sampling needs an even count, got {count}")
            half = torch.randn((count // 2, self.dim), generator=generator, dtype=torch.float64)
            eps = torch.cat([half, -half])
        else:
            eps = torch.randn((count, self.dim), generator=generator, dtype=torch.float64)
        return self.mean + self.std() * eps

    def log_prob(self, params: torch.Tensor) -> torch.Tensor:
        """``log pi(z)`` (count,) of parameters (count, p), differentiable in ``m`` and ``s``."""
        std = self.std()
        z = (params - self.mean) / std
        return -(0.5 * z**2 + std.log() + 0.5 * math.log(2 * math.pi)).sum(dim=-1)


def policy_step(
    policy: CoefficientPolicy,
    optimizer: torch.optim.Optimizer,
    params: torch.Tensor,
    advantages: torch.Tensor,
    config: PolicyConfig,
) -> UpdateStats:
    """``config.epochs`` PPO-clip steps on the sampled ``params`` (G, p) with advantages (G,).

    The first step's gradient is REINFORCE's, ``-mean_g A_g grad log pi(z_g)``.
    """
    advantages = advantages.to(torch.float64)
    with torch.no_grad():
        old = policy.log_prob(params)
    steps = [
        ppo_step(optimizer, policy.log_prob(params), old, advantages, config.clip)
        for _ in range(config.epochs)
    ]
    return UpdateStats.mean(steps)
