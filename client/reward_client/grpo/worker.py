"""The GRPO trainer worker: sample → features → rewards → advantages → policy update → commit.

One :meth:`TrainerWorker.update` (stepped by :meth:`~reward_client.training.loop.Trainer.run`,
which also evaluates, logs, checkpoints and resumes):

1. draw G·K noises and integrate the SDE sampler (:mod:`reward_client.training.sde`), keeping
   the trajectory and each transition's log-probability; a class-conditional policy
   (``classes > 0``) samples group g's K samples of class ``g % classes`` (the group's
   "prompt");
2. map the samples to features (a frozen network, no gradients);
3. ask the reward source for rewards and advantages of the (G, K, d) groups (passing the
   step, which names the step's round of requests on every rank); a conditional run
   normalises the rewards per class instead, each sample against the other samples of its
   class in the step's batch over all ranks (:func:`~reward_client.training.sources.per_prompt`
   on the gathered rewards and classes, as flow_grpo does per prompt after its gather);
4. run the PPO-clip update (:mod:`.update`) on the stored trajectory;
5. every ``commit_every`` steps, commit the first ``commit_groups`` groups (an unbiased draw
   from the policy) so the source's pool tracks the policy.

All randomness of step ``n`` on rank ``r`` comes from a generator seeded by ``(seed, r, n)``, so a
run resumed from a checkpoint repeats the steps an uninterrupted run would take (given a
deterministic reward source). Under ``torchrun`` the policy is wrapped in DDP, every rank
samples and scores its own G groups (its share of the step's W·G, numbered over all ranks:
:meth:`TrainerWorker.labels`), the rewards are gathered for the per-class normalisation and the
logged reward statistics, and rank 0 evaluates, logs and writes checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..training import distributed
from ..training.loop import Evaluator, Featurizer, Record, RunConfig, Trainer
from ..training.sde import SDEConfig, sample_sde
from ..training.sources import RewardSource, per_prompt
from .update import GRPOConfig, policy_update

__all__ = ["TrainSetup", "TrainerWorker", "WorkerConfig"]


@dataclass(frozen=True)
class TrainSetup:
    """What a training job brings to a worker: the policy, the feature map, one sample's shape,
    and for a class-conditional policy ``policy(x, t, labels)`` its number of classes (0: an
    unconditional ``policy(x, t)``; see :attr:`WorkerConfig.classes`)."""

    policy: nn.Module
    featurize: Featurizer
    sample_shape: tuple[int, ...]
    classes: int = 0


@dataclass(frozen=True)
class WorkerConfig(RunConfig):
    """Settings of a GRPO run (per rank); the loop's settings are :class:`RunConfig`'s.

    Attributes:
        groups, group_size: G groups of K samples per step, on each rank (the step's batch
            is the ranks' W·G groups).
        lr: Adam learning rate.
        commit_groups: groups committed each time.
        classes: 0 for an unconditional policy ``policy(x, t)``; otherwise the number of class
            labels of a conditional ``policy(x, t, labels)``, whose advantages are normalised
            per class.
        sde: the sampler's discretisation and noise.
        grpo: the policy update's settings.
    """

    groups: int = 16
    group_size: int = 32
    lr: float = 3e-5
    commit_groups: int = 1
    classes: int = 0
    sde: SDEConfig = field(default_factory=SDEConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)


class TrainerWorker(Trainer[WorkerConfig]):
    """Fine-tunes a velocity model ``policy(x, t)`` with rewards from ``source``.

    The policy must be a deterministic function (no dropout, no batch statistics): the update
    compares its log-probabilities with those recorded while sampling.

    Args:
        policy: the flow model being trained (unwrapped; DDP wrapping happens here).
        featurize: frozen feature map applied to generated samples.
        sample_shape: shape of one sample, e.g. ``(1, 8, 8)``.
        source: the reward provider.
        config: run settings.
        evaluate: optional evaluation callback, logged with ``"kind": "eval"``.
    """

    def __init__(
        self,
        policy: nn.Module,
        featurize: Featurizer,
        sample_shape: tuple[int, ...],
        source: RewardSource,
        config: WorkerConfig,
        evaluate: Evaluator | None = None,
    ) -> None:
        super().__init__(
            policy=policy,
            optimizer=torch.optim.Adam(policy.parameters(), lr=config.lr),
            source=source,
            featurize=featurize,
            sample_shape=sample_shape,
            config=config,
            evaluate=evaluate,
        )
        self.rank = distributed.rank()
        self._train_module = distributed.wrap(policy)

    def labels(self) -> torch.Tensor | None:
        """The class of every sample of this rank's step (G·K,); None for an unconditional
        policy. Groups are numbered over all ranks: rank r holds the step's groups
        ``r G .. r G + G - 1``, and group g is class ``g % classes``. Every class has the same
        number of groups when the ranks' W·G groups are a multiple of ``classes``, and a class's
        groups spread over the ranks (20 groups of 10 classes on 4 ranks: class c is group c
        and group c + 10, on ranks c // 5 and c // 5 + 2)."""
        cfg = self.config
        if cfg.classes == 0:
            return None
        first = self.rank * cfg.groups
        groups = torch.arange(first, first + cfg.groups)
        return (groups % cfg.classes).repeat_interleave(cfg.group_size)

    def update(self) -> Record:
        """One sample → score → update (→ commit) step; returns its metrics."""
        cfg = self.config
        seed = self.step_seed(self.rank)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((cfg.groups * cfg.group_size, *self.sample_shape), generator=generator)
        labels = self.labels()
        trajectory = sample_sde(self.policy, noise, cfg.sde, generator, labels)
        with torch.no_grad():
            features = self.featurize(trajectory.samples).float().cpu().numpy()
        features = features.reshape(cfg.groups, cfg.group_size, -1)
        scores = self.source.score(features, seed, step=self.step)
        # Every rank's rewards, in rank order: the step's whole batch, as flow_grpo gathers it.
        rewards = distributed.all_gather(scores.rewards.reshape(-1))
        if labels is None:
            flat = scores.advantages.reshape(-1)
        else:
            # Per class over the gathered batch (a class's samples sit on several ranks); each
            # rank keeps its own slice.
            mine = slice(self.rank * labels.numel(), (self.rank + 1) * labels.numel())
            flat = per_prompt(rewards, distributed.all_gather(labels.numpy()))[mine]
        advantages = torch.as_tensor(flat, dtype=torch.float32)
        stats = policy_update(
            self._train_module, self.optimizer, trajectory, advantages, cfg.sde, cfg.grpo, generator
        )
        if self.commit_due:
            self.source.commit(features[: cfg.commit_groups].reshape(-1, features.shape[-1]))
        return {
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()),
            "loss": stats.loss,
            "clip_fraction": stats.clip_fraction,
            "approx_kl": stats.approx_kl,
            **scores.info,
        }
