"""Toy models with known answers, shared by the tests of `reward_client.training` and
`reward_client.grpo` (and the torchrun test's setup), and one rank of the spawned two-rank test.

Gaussian data ``x1 ~ N(m, diag(sigma^2))`` with noise ``x0 ~ N(0, I)``: the marginal of
``x_t = (1 - t) x0 + t x1`` is ``N(t m, diag((1 - t)^2 + t^2 sigma^2))`` and the exact
flow-matching velocity is ``E[x1 - x0 | x_t = x] = m + (t sigma^2 - (1 - t)) / var_t (x - t m)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from reward_client.grpo import worker as worker_module
from reward_client.grpo.worker import TrainerWorker, TrainSetup, WorkerConfig
from reward_client.training import distributed
from reward_client.training.ppo import UpdateStats
from reward_client.training.sde import SDEConfig
from reward_client.training.sources import Scores


class GaussianVelocity(nn.Module):
    """Exact velocity of Gaussian data with mean ``mean`` and standard deviations ``std``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def marginal_var(self, t: torch.Tensor) -> torch.Tensor:
        """``(1 - t)^2 + t^2 sigma^2`` per dimension."""
        return (1 - t) ** 2 + t**2 * self.std**2

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tb = t[:, None]
        gain = (tb * self.std**2 - (1 - tb)) / self.marginal_var(tb)
        return self.mean + gain * (x - tb * self.mean)


class AffineVelocity(nn.Module):
    """A trainable velocity ``v = W x + b + c t`` on flat vectors (deterministic, tiny)."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(dim, dim)
        self.time = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + t[:, None] * self.time


class ConditionalAffine(AffineVelocity):
    """``v = W x + b + c t + e[label]``: an affine velocity with a learned shift per class; it
    keeps the labels of every call (``calls``) so tests can see what it was conditioned on."""

    def __init__(self, dim: int, classes: int, seed: int = 0) -> None:
        super().__init__(dim, seed)
        self.shift = nn.Embedding(classes, dim)
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        self.calls.append(labels.clone())
        return super().forward(x, t) + self.shift(labels)


class MeanReward:
    """Deterministic per-group reward ``-|mean of group - target|^2`` (a stand-in for FD)."""

    def __init__(self, target: float = 1.0) -> None:
        self.target = target
        self.commits: list[np.ndarray] = []

    def score(self, features: np.ndarray, seed: int, *, step: int | None = None) -> Scores:
        rewards = -((features.mean(axis=1) - self.target) ** 2).sum(axis=1)
        adv = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
        size = features.shape[1]
        return Scores(
            rewards=np.repeat(rewards[:, None], size, axis=1),
            advantages=np.repeat(adv[:, None], size, axis=1),
            info={"seed": float(seed)},
        )

    def commit(self, features: np.ndarray) -> None:
        self.commits.append(features.copy())


def build() -> TrainSetup:
    """Setup for ``python -m reward_client.grpo.train --setup trainer_toy:build``: a 4-d
    affine flow."""
    return TrainSetup(policy=AffineVelocity(4), featurize=nn.Identity(), sample_shape=(4,))


class GlobalGroupRewards:
    """Rewards ``10 g + k`` for sample k of the step's global group g (rank r's local group j
    is global group ``r G + j``), whatever the features; keeps the steps it was asked at."""

    def __init__(self) -> None:
        self.steps: list[int | None] = []

    def score(self, features: np.ndarray, seed: int, *, step: int | None = None) -> Scores:
        self.steps.append(step)
        groups, size, _ = features.shape
        first = distributed.rank() * groups
        rewards = 10.0 * np.arange(first, first + groups)[:, None] + np.arange(size)[None, :]
        return Scores(rewards=rewards, advantages=np.zeros_like(rewards))

    def commit(self, features: np.ndarray) -> None:
        raise AssertionError("the ranks' test commits nothing")


def conditional_rank(rank: int, world: int, rendezvous: str, out: str) -> None:
    """One rank (``torch.multiprocessing.spawn``'s process ``rank``) of a two-step conditional
    run over gloo with 3 groups of 2 a rank and 2 classes; writes what it saw (the sampler's
    classes, the advantages handed to the update, the source's steps, the logged reward mean)
    to ``out/rank<rank>.pt``."""
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        seen: list[torch.Tensor] = []

        def capture(policy, optimizer, trajectory, advantages, *rest):  # type: ignore[no-untyped-def]
            seen.append(advantages)
            return UpdateStats(loss=0.0, clip_fraction=0.0, approx_kl=0.0)

        worker_module.policy_update = capture  # this process's own copy of the module
        policy = ConditionalAffine(4, classes=2)
        source = GlobalGroupRewards()
        config = WorkerConfig(
            steps=2,
            groups=3,
            group_size=2,
            classes=2,
            commit_every=0,
            eval_every=0,
            checkpoint_every=0,
            progress=False,
            sde=SDEConfig(steps=4, noise=0.5),
        )
        history = TrainerWorker(policy, nn.Identity(), (4,), source, config).run()
        torch.save(
            {
                "labels": policy.calls[0],
                "advantages": seen,
                "steps": source.steps,
                "reward_mean": [r["reward_mean"] for r in history],
            },
            f"{out}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()
