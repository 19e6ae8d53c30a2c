"""Merge-coefficient RL: learn post-hoc merge weights of checkpoints with a reward source.

One :meth:`MergeTrainer.update` (stepped by :meth:`~reward_client.training.loop.Trainer.run`,
which also evaluates, logs, checkpoints and resumes):

1. draw G coefficient vectors ``z_g`` from the policy (:mod:`.policy`), weights
   ``w_g = w(z_g)``;
2. for each g, merge the checkpoints into the one model buffer (:func:`.merge.merge_into`),
   integrate the deterministic ODE (:func:`~reward_client.training.sde.sample_ode`) from one
   set of K noises shared by all G vectors, and map the samples to features: group g is (K, d);
3. score the (G, K, d) groups in one request (for the service: distribution-wise rewards, the
   ``shared`` replacement mode, advantages normalised over the G groups);
4. update the policy (REINFORCE or GRPO-style, :func:`.policy.policy_step`);
5. every ``commit_every`` steps, commit group 0 (an unbiased draw from the policy) so the pool
   tracks the policy.

Training and inference use the same sampler (the ODE): nothing is learned about an SDE that the
merged model is never run with. All randomness of step ``n`` comes from ``(seed, n)``; a run
resumed from :meth:`MergeTrainer.state_dict` repeats the steps an uninterrupted run takes
(given a deterministic reward source).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..training.loop import Evaluator, Featurizer, Record, RunConfig, Trainer
from ..training.sde import sample_ode
from ..training.sources import RewardSource
from .merge import Snapshots, merge_into
from .policy import CoefficientPolicy, PolicyConfig, policy_step

__all__ = ["WEIGHTS", "MergeConfig", "MergeSetup", "MergeTrainer"]

WEIGHTS = "weights.json"
"""Written beside each checkpoint: ``{"step": n, "weights": [...]}``, the learned merge."""


@dataclass(frozen=True)
class MergeConfig(RunConfig):
    """Settings of a merge-coefficient run; the loop's settings are :class:`RunConfig`'s, with
    shorter defaults here (and a checkpoint every step: the policy is a few numbers).

    Attributes:
        candidates: coefficient vectors G per step (the groups of one rewards request).
        group_size: ODE samples K per vector (the same K noises for all G vectors of a step).
        ode_steps: Euler steps of the ODE sampler.
        policy: policy and update settings.

    ``commit_every`` commits group 0; evaluations score the policy's mean merge.
    """

    steps: int = 40
    eval_every: int = 5
    checkpoint_every: int = 1
    candidates: int = 8
    group_size: int = 256
    ode_steps: int = 10
    policy: PolicyConfig = field(default_factory=PolicyConfig)


@dataclass(frozen=True)
class MergeSetup:
    """What a merge job brings: the output model, its checkpoints, the feature map, a shape."""

    model: nn.Module
    snapshots: Snapshots
    featurize: Featurizer
    sample_shape: tuple[int, ...]


class MergeTrainer(Trainer[MergeConfig]):
    """Learns merge weights of ``snapshots`` for the velocity model ``model``.

    Args:
        model: a module whose ``state_dict()`` has the snapshots' keys; its weights are
            overwritten by every merge (it is the merge's output buffer).
        snapshots: the checkpoints, oldest first.
        featurize: frozen feature map of generated samples.
        sample_shape: shape of one sample, e.g. ``(1, 8, 8)``.
        source: the reward provider (:class:`~reward_client.training.sources.ServiceRewards`
            for the service).
        config: run settings.
        init_weights: the policy mean's starting weights (uniform by default).
        evaluate: optional evaluation of the mean merge, logged with ``"kind": "eval"``.
    """

    label = "merge"
    policy: CoefficientPolicy

    def __init__(
        self,
        model: nn.Module,
        snapshots: Snapshots,
        featurize: Featurizer,
        sample_shape: tuple[int, ...],
        source: RewardSource,
        config: MergeConfig,
        init_weights: torch.Tensor | None = None,
        evaluate: Evaluator | None = None,
    ) -> None:
        policy = CoefficientPolicy(len(snapshots), config.policy, init_weights)
        super().__init__(
            policy=policy,
            optimizer=torch.optim.Adam(
                [p for p in policy.parameters() if p.requires_grad], lr=config.policy.lr
            ),
            source=source,
            featurize=featurize,
            sample_shape=sample_shape,
            config=config,
            evaluate=evaluate,
        )
        self.model = model
        self.snapshots = snapshots

    # -- merging and sampling ------------------------------------------------------------------

    def load_weights(self, weights: torch.Tensor) -> nn.Module:
        """Merge the snapshots with ``weights`` into :attr:`model` and return it."""
        merge_into(self.model.state_dict(), self.snapshots, weights)
        return self.model

    def mean_model(self) -> nn.Module:
        """:attr:`model` holding the merge the policy's mean recommends."""
        return self.load_weights(self.policy.mean_weights())

    @torch.no_grad()
    def features(self, weights: torch.Tensor, noise: torch.Tensor) -> np.ndarray:
        """Features (K, d) of the ODE samples from ``noise`` of the merge with ``weights``."""
        samples = sample_ode(self.load_weights(weights), noise, self.config.ode_steps)
        features: np.ndarray = self.featurize(samples).float().cpu().numpy()
        return features

    # -- the loop's hooks ----------------------------------------------------------------------

    def evaluated_model(self) -> tuple[nn.Module, Record]:
        """The mean merge, recorded with its weights."""
        weights = self.policy.mean_weights()
        return self.load_weights(weights), {"weights": weights.tolist()}

    def write_outputs(self, out_dir: Path) -> None:
        """``weights.json``: the step and the mean merge's weights."""
        weights = {"step": self.step, "weights": self.policy.mean_weights().tolist()}
        (out_dir / WEIGHTS).write_text(json.dumps(weights) + "\n")

    def update(self) -> Record:
        """One sample → merge → ODE → score → update (→ commit) step; returns its metrics."""
        cfg = self.config
        seed = self.step_seed()
        generator = torch.Generator().manual_seed(seed)
        params = self.policy.sample(cfg.candidates, generator, cfg.policy.antithetic)
        noise = torch.randn((cfg.group_size, *self.sample_shape), generator=generator)
        weights = self.policy.weights(params)
        features = np.stack([self.features(w, noise) for w in weights])
        scores = self.source.score(features, seed)
        advantages = torch.as_tensor(scores.advantages[:, 0])
        stats = policy_step(self.policy, self.optimizer, params, advantages, cfg.policy)
        if self.commit_due:
            self.source.commit(features[0])
        rewards = scores.rewards[:, 0]
        return {
            "seed": seed,
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()),
            "reward_best": float(rewards.max()),
            "weights": self.policy.mean_weights().tolist(),
            "std_mean": float(self.policy.std().detach().mean()),
            "loss": stats.loss,
            "approx_kl": stats.approx_kl,
            **scores.info,
        }
