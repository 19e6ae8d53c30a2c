"""Samplers of a flow-matching model: the deterministic ODE and a marginal-preserving SDE.

Convention: time runs from noise ``t = 0`` to data ``t = 1`` along
``x_t = (1 - t) x0 + t x1`` with ``x0 ~ N(0, I)``, and the model predicts the velocity
``v(x, t) = E[x1 - x0 | x_t = x]``. The probability-flow ODE is ``dx = v dt``.

Since ``x_t`` is ``t x1`` plus Gaussian noise of standard deviation ``1 - t``, Tweedie's formula
gives the score of the marginal from the velocity::

    score(x, t) = -E[x0 | x_t = x] / (1 - t) = -(x - t v) / (1 - t)

and the SDE ``dx = [v + (s^2 / 2) score] dt + s dW`` has the same marginals as the ODE for any
noise level ``s`` (Fokker–Planck: the extra drift ``(s^2 / 2) grad log p`` cancels the diffusion
term ``(s^2 / 2) lap p``). Euler–Maruyama turns each step into a Gaussian transition::

    x_{k+1} ~ N(x_k + [v + (s^2 / 2) score] dt_k,  s^2 dt_k I)

whose log-density is what Flow-GRPO style policy gradients use. The last step is taken without
noise (its score needs ``1 / (1 - t)`` near ``t = 1``), so it has no log-probability.

A conditional model (a class label or prompt embedding per sample: ``cond``, shape (B, ...)) is
called as ``model(x, t, cond)``; every function here takes ``cond=None`` (unconditional,
``model(x, t)``) or the batch's conditions, and a :class:`Trajectory` keeps them for the policy
update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "SDEConfig",
    "Trajectory",
    "VelocityModel",
    "gaussian_log_prob",
    "sample_ode",
    "sample_sde",
    "step_log_prob",
    "time_grid",
    "transition",
    "velocity",
]

VelocityModel = Callable[..., torch.Tensor]
"""``v = model(x, t)`` or, conditional, ``model(x, t, cond)``: ``x`` of shape (B, ...), ``t`` of
shape (B,), ``cond`` of shape (B, ...), ``v`` shaped like ``x``."""


def velocity(
    model: VelocityModel, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
) -> torch.Tensor:
    """``model(x, t)``, or ``model(x, t, cond)`` when there are conditions."""
    return model(x, t) if cond is None else model(x, t, cond)


@dataclass(frozen=True)
class SDEConfig:
    """Discretisation of the sampler.

    Attributes:
        steps: number of uniform time steps from 0 to 1.
        noise: the diffusion coefficient ``s`` of ``dx = [...] dt + s dW``.
        min_one_minus_t: lower clip of ``1 - t`` in the score's denominator.
    """

    steps: int = 10
    noise: float = 0.3
    min_one_minus_t: float = 0.05

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.noise <= 0:
            raise ValueError(f"noise must be > 0 (use sample_ode for s = 0), got {self.noise}")
        if not 0 < self.min_one_minus_t <= 1:
            raise ValueError(f"min_one_minus_t must be in (0, 1], got {self.min_one_minus_t}")


@dataclass(frozen=True)
class Trajectory:
    """States visited by one batch of SDE samples.

    Attributes:
        states: (T + 1, B, ...) with ``states[0]`` the noise and ``states[-1]`` the sample.
        times: (T + 1,) the time grid.
        log_probs: (T - 1, B) log-density of each noisy transition ``states[k] -> states[k+1]``
            under the sampling policy (the final, noiseless step has none).
        cond: (B, ...) the samples' conditions, or None for an unconditional model.
    """

    states: torch.Tensor
    times: torch.Tensor
    log_probs: torch.Tensor
    cond: torch.Tensor | None = None

    @property
    def samples(self) -> torch.Tensor:
        """The generated batch, ``states[-1]``."""
        return self.states[-1]


def time_grid(steps: int, device: torch.device | None = None) -> torch.Tensor:
    """Uniform grid ``t_k = k / steps``, k = 0..steps, float32."""
    return torch.linspace(0.0, 1.0, steps + 1, device=device)


def _expand(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample time (B,) against a batch (B, ...)."""
    return t.reshape(t.shape + (1,) * (x.dim() - 1))


def transition(
    model: VelocityModel,
    x: torch.Tensor,
    t: torch.Tensor,
    dt: torch.Tensor,
    config: SDEConfig,
    noisy: bool = True,
    cond: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of one Euler–Maruyama step from ``(x, t)`` over ``dt``.

    ``mean = x + [v + (s^2 / 2) score] dt`` with ``score = -(x - t v) / max(1 - t, c)``
    and ``std = s sqrt(dt)``; with ``noisy=False`` it is the ODE step
    ``mean = x + v dt``, ``std = 0``. ``t`` and ``dt`` are per-sample, shape (B,); ``cond``
    the per-sample conditions (None: unconditional).
    """
    v = velocity(model, x, t, cond)
    t_b, dt_b = _expand(t, x), _expand(dt, x)
    if not noisy:
        return x + v * dt_b, torch.zeros_like(dt_b)
    # Guard: the score's 1 / (1 - t) blows up at the data end; clip the denominator.
    one_minus_t = (1.0 - t_b).clamp_min(config.min_one_minus_t)
    score = -(x - t_b * v) / one_minus_t
    drift = v + 0.5 * config.noise**2 * score
    return x + drift * dt_b, config.noise * dt_b.sqrt()


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Log-density of ``x`` under ``N(mean, std^2 I)``, summed over all but the batch axis.

    ``log p = -|x - mean|^2 / (2 std^2) - D log std - (D / 2) log(2 pi)``, D = numel per sample.
    """
    dims = tuple(range(1, x.dim()))
    d = x[0].numel()
    sq = ((x - mean) ** 2).sum(dim=dims)
    std_flat = std.reshape(std.shape[0])
    return -sq / (2 * std_flat**2) - d * std_flat.log() - 0.5 * d * math.log(2 * math.pi)


def step_log_prob(
    model: VelocityModel,
    x: torch.Tensor,
    x_next: torch.Tensor,
    t: torch.Tensor,
    dt: torch.Tensor,
    config: SDEConfig,
    cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-probability (B,) of the noisy transition ``x -> x_next`` under ``model``.

    Differentiable in the model's parameters: this is the policy's ``log pi(a | s)`` of
    Flow-GRPO, with the state ``(x, t)`` and the action ``x_next``.
    """
    mean, std = transition(model, x, t, dt, config, cond=cond)
    return gaussian_log_prob(x_next, mean, std)


@torch.no_grad()
def sample_sde(
    model: VelocityModel,
    noise: torch.Tensor,
    config: SDEConfig,
    generator: torch.Generator | None = None,
    cond: torch.Tensor | None = None,
) -> Trajectory:
    """Integrate the SDE from ``noise`` (B, ...) with Euler–Maruyama, recording log-probs
    (conditioned on ``cond`` (B, ...) when given).

    Steps 0..T-2 are noisy (``x_{k+1} = mean_k + std_k eps``); step T-1 is the ODE step.
    """
    times = time_grid(config.steps, noise.device)
    batch = noise.shape[0]
    states = [noise]
    log_probs = []
    x = noise
    for k in range(config.steps):
        t = times[k].expand(batch)
        dt = (times[k + 1] - times[k]).expand(batch)
        last = k == config.steps - 1
        mean, std = transition(model, x, t, dt, config, noisy=not last, cond=cond)
        if last:
            x = mean
        else:
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + std * eps
            log_probs.append(gaussian_log_prob(x, mean, std))
        states.append(x)
    lp = torch.stack(log_probs) if log_probs else noise.new_zeros((0, batch))
    return Trajectory(states=torch.stack(states), times=times, log_probs=lp, cond=cond)


@torch.no_grad()
def sample_ode(
    model: VelocityModel, noise: torch.Tensor, steps: int, cond: torch.Tensor | None = None
) -> torch.Tensor:
    """Euler integration of the probability-flow ODE ``dx = v dt`` from ``noise`` to data
    (conditioned on ``cond`` (B, ...) when given)."""
    times = time_grid(steps, noise.device)
    x = noise
    for k in range(steps):
        t = times[k].expand(x.shape[0])
        x = x + velocity(model, x, t, cond) * (times[k + 1] - times[k])
    return x
