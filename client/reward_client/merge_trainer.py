"""Merge-coefficient RL: learn post-hoc merge weights of checkpoints with a reward source.

One :meth:`MergeTrainer.train_step`:

1. draw G coefficient vectors ``z_g`` from the policy (:mod:`.merge_policy`), weights
   ``w_g = w(z_g)``;
2. for each g, merge the checkpoints into the one model buffer (:func:`.merge.merge_into`),
   integrate the deterministic ODE (:func:`.sde.sample_ode`) from one set of K noises shared by
   all G vectors, and map the samples to features: group g is (K, d);
3. score the (G, K, d) groups in one request (for the service: distribution-wise rewards, the
   ``shared`` replacement mode, advantages normalised over the G groups);
4. update the policy (REINFORCE or GRPO-style, :func:`.merge_policy.policy_step`);
5. every ``commit_every`` steps, commit group 0 (an unbiased draw from the policy) so the pool
   tracks the policy.

Training and inference use the same sampler (the ODE): nothing is learned about an SDE that the
merged model is never run with. All randomness of step ``n`` comes from ``(seed, n)``; a run
resumed from :meth:`MergeTrainer.state_dict` repeats the steps an uninterrupted run takes
(given a deterministic reward source).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .merge import Snapshots, merge_into
from .merge_policy import CoefficientPolicy, PolicyConfig, policy_step
from .sde import sample_ode
from .sources import RewardSource
from .trainer_state import restore_training_state, training_state
from .worker import Evaluator, Featurizer

__all__ = ["MergeConfig", "MergeSetup", "MergeTrainer"]


@dataclass(frozen=True)
class MergeConfig:
    """Settings of a merge-coefficient run.

    Attributes:
        steps: policy updates.
        candidates: coefficient vectors G per step (the groups of one rewards request).
        group_size: ODE samples K per vector (the same K noises for all G vectors of a step).
        ode_steps: Euler steps of the ODE sampler.
        commit_every: commit group 0 every this many steps (0: never).
        eval_every: evaluate the mean merge every this many steps, plus at start and end
            (0: never).
        seed: base seed of all sampling randomness.
        progress: show a progress bar.
        policy: policy and update settings.
    """

    steps: int = 40
    candidates: int = 8
    group_size: int = 256
    ode_steps: int = 10
    commit_every: int = 1
    eval_every: int = 5
    seed: int = 0
    progress: bool = True
    policy: PolicyConfig = field(default_factory=PolicyConfig)


@dataclass(frozen=True)
class MergeSetup:
    """What a merge job brings: the output model, its checkpoints, the feature map, a shape."""

    model: nn.Module
    snapshots: Snapshots
    featurize: Featurizer
    sample_shape: tuple[int, ...]


class MergeTrainer:
    """Learns merge weights of ``snapshots`` for the velocity model ``model``.

    Args:
        model: a module whose ``state_dict()`` has the snapshots' keys; its weights are
            overwritten by every merge (it is the merge's output buffer).
        snapshots: the checkpoints, oldest first.
        featurize: frozen feature map of generated samples.
        sample_shape: shape of one sample, e.g. ``(1, 8, 8)``.
        source: the reward provider (:class:`~reward_client.sources.ServiceRewards` for the
            service).
        config: run settings.
        init_weights: the policy mean's starting weights (uniform by default).
        evaluate: optional evaluation of the mean merge, logged with ``"kind": "eval"``.
    """

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
        self.model = model
        self.snapshots = snapshots
        self.featurize = featurize
        self.sample_shape = tuple(sample_shape)
        self.source = source
        self.config = config
        self.evaluate = evaluate
        self.policy = CoefficientPolicy(len(snapshots), config.policy, init_weights)
        self.optimizer = torch.optim.Adam(
            [p for p in self.policy.parameters() if p.requires_grad], lr=config.policy.lr
        )
        self.step = 0
        self.history: list[dict[str, Any]] = []

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Policy, optimizer, step counter and the metrics history."""
        return training_state(self.policy, self.optimizer, self.step, self.history)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.step, self.history = restore_training_state(state, self.policy, self.optimizer)

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
        return self.featurize(samples).float().cpu().numpy()

    def step_seed(self) -> int:
        """The 32-bit seed of all randomness of the current step, drawn from ``(seed, step)``."""
        seq = np.random.SeedSequence([self.config.seed, self.step])
        return int(seq.generate_state(1, dtype=np.uint32)[0])

    # -- training ------------------------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> dict[str, Any]:
        self.history.append(record)
        return record

    def _evaluate(self) -> None:
        if self.evaluate is not None:
            weights = self.policy.mean_weights()
            metrics = self.evaluate(self.load_weights(weights))
            self._log({"kind": "eval", "step": self.step, "weights": weights.tolist(), **metrics})

    def train_step(self) -> dict[str, Any]:
        """One sample → merge → ODE → score → update (→ commit) step; returns its record."""
        cfg = self.config
        start = time.perf_counter()
        seed = self.step_seed()
        generator = torch.Generator().manual_seed(seed)
        params = self.policy.sample(cfg.candidates, generator, cfg.policy.antithetic)
        noise = torch.randn((cfg.group_size, *self.sample_shape), generator=generator)
        weights = self.policy.weights(params)
        features = np.stack([self.features(w, noise) for w in weights])
        scores = self.source.score(features, seed)
        advantages = torch.as_tensor(scores.advantages[:, 0])
        stats = policy_step(self.policy, self.optimizer, params, advantages, cfg.policy)
        self.step += 1
        if cfg.commit_every > 0 and self.step % cfg.commit_every == 0:
            self.source.commit(features[0])
        rewards = scores.rewards[:, 0]
        return self._log(
            {
                "kind": "train",
                "step": self.step,
                "seed": seed,
                "reward_mean": float(rewards.mean()),
                "reward_std": float(rewards.std()),
                "reward_best": float(rewards.max()),
                "weights": self.policy.mean_weights().tolist(),
                "std_mean": float(self.policy.std().detach().mean()),
                "loss": stats.loss,
                "approx_kl": stats.approx_kl,
                "seconds": time.perf_counter() - start,
                **scores.info,
            }
        )

    def run(self) -> list[dict[str, Any]]:
        """Train until ``config.steps`` (from the current step); returns the history."""
        cfg = self.config
        if self.step == 0 and cfg.eval_every > 0:
            self._evaluate()
        with tqdm(
            total=cfg.steps, initial=self.step, disable=not cfg.progress,
            desc=f"merge[{cfg.seed}]", dynamic_ncols=True,
        ) as bar:  # fmt: skip
            while self.step < cfg.steps:
                record = self.train_step()
                bar.update(1)
                bar.set_postfix(reward=f"{record['reward_mean']:.4g}")
                if cfg.eval_every > 0 and (
                    self.step % cfg.eval_every == 0 or self.step == cfg.steps
                ):
                    self._evaluate()
        return self.history
