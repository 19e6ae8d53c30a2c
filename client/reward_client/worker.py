"""Trainer worker: sample → features → rewards → advantages → policy update → commit.

One :meth:`TrainerWorker.train_step`:

1. draw G·K noises and integrate the SDE sampler (:mod:`.sde`), keeping the trajectory and
   each transition's log-probability;
2. map the samples to features (a frozen network, no gradients);
3. ask the reward source for rewards and advantages of the (G, K, d) groups;
4. run the PPO-clip update (:mod:`.grpo`) on the stored trajectory;
5. every ``commit_every`` steps, commit the first ``commit_groups`` groups (an unbiased draw
   from the policy) so the source's pool tracks the policy.

All randomness of step ``n`` on rank ``r`` comes from a generator seeded by ``(seed, r, n)``, so a
run resumed from a checkpoint repeats the steps an uninterrupted run would take (given a
deterministic reward source). Under ``torchrun`` the policy is wrapped in DDP and every rank
scores its own groups; rank 0 evaluates, logs and writes checkpoints.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .grpo import GRPOConfig, policy_update
from .sde import SDEConfig, sample_sde
from .sources import RewardSource
from .trainer_state import restore_training_state, training_state

__all__ = ["Evaluator", "Featurizer", "TrainSetup", "TrainerWorker", "WorkerConfig"]

Featurizer = Callable[[torch.Tensor], torch.Tensor]
"""Maps samples (B, ...) to features (B, d)."""

Evaluator = Callable[[nn.Module], dict[str, float]]
"""Scores the current policy (e.g. FID of fixed-seed ODE samples); called on rank 0."""

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class TrainSetup:
    """What a training job brings to a worker: the policy, the feature map, one sample's shape."""

    policy: nn.Module
    featurize: Featurizer
    sample_shape: tuple[int, ...]


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of a training run (per rank).

    Attributes:
        steps: total policy updates.
        groups, group_size: G groups of K samples per step.
        lr: Adam learning rate.
        commit_every: commit every this many steps (0: never).
        commit_groups: groups committed each time.
        eval_every: evaluate every this many steps, plus at the start and end (0: never).
        checkpoint_every: write a checkpoint every this many steps, plus at the end (0: never).
        seed: base seed of all sampling randomness.
        out_dir: checkpoints and ``metrics.jsonl`` go here (None: nothing is written).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists.
        progress: show a progress bar.
    """

    steps: int = 200
    groups: int = 16
    group_size: int = 32
    lr: float = 3e-5
    commit_every: int = 1
    commit_groups: int = 1
    eval_every: int = 25
    checkpoint_every: int = 50
    seed: int = 0
    out_dir: Path | None = None
    resume: bool = True
    progress: bool = True
    sde: SDEConfig = field(default_factory=SDEConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)


def _every(step: int, period: int) -> bool:
    return period > 0 and step % period == 0


class TrainerWorker:
    """Fine-tunes a velocity model ``policy(x, t)`` with rewards from ``source``.

    The policy must be a deterministic function (no dropout, no batch statistics): the update
    compares its log-probabilities with those recorded while sampling.

    Args:
        policy: the flow model being trained (unwrapped; DDP wrapping happens here).
        featurize: frozen feature map applied to generated samples.
        sample_shape: shape of one sample, e.g. ``(1, 8, 8)``.
        source: the reward provider (:class:`~reward_client.sources.RewardSource`).
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
        self.policy = policy
        self.featurize = featurize
        self.sample_shape = tuple(sample_shape)
        self.source = source
        self.config = config
        self.evaluate = evaluate
        self.rank = distributed.rank()
        self._train_module = distributed.wrap(policy)
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
        self.step = 0
        self.history: list[dict[str, Any]] = []

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Policy, optimizer, step counter and the metrics history."""
        return training_state(self.policy, self.optimizer, self.step, self.history)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.step, self.history = restore_training_state(state, self.policy, self.optimizer)

    @property
    def checkpoint_path(self) -> Path | None:
        """``out_dir/checkpoint.pt``, or None when the run writes nothing."""
        return None if self.config.out_dir is None else Path(self.config.out_dir) / CHECKPOINT

    def save_checkpoint(self) -> None:
        """Write the state atomically (temporary file, then rename); rank 0 only."""
        path = self.checkpoint_path
        if path is None or not distributed.is_main():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def _maybe_resume(self) -> None:
        path = self.checkpoint_path
        if self.config.resume and path is not None and path.exists():
            self.load_state_dict(torch.load(path, weights_only=True))
            self._rewrite_log()

    # -- logging -------------------------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.config.out_dir is not None and distributed.is_main():
            Path(self.config.out_dir).mkdir(parents=True, exist_ok=True)
            with open(Path(self.config.out_dir) / METRICS, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _rewrite_log(self) -> None:
        """After a resume, the log holds exactly the restored history."""
        if self.config.out_dir is not None and distributed.is_main():
            lines = "".join(json.dumps(r) + "\n" for r in self.history)
            (Path(self.config.out_dir) / METRICS).write_text(lines)

    def _evaluate(self) -> None:
        if self.evaluate is None or not distributed.is_main():
            return
        self._log({"kind": "eval", "step": self.step, **self.evaluate(self.policy)})

    # -- training ------------------------------------------------------------------------------

    def _generator(self) -> tuple[torch.Generator, int]:
        """Generator and integer seed for this (seed, rank, step)."""
        seq = np.random.SeedSequence([self.config.seed, self.rank, self.step])
        seed = int(seq.generate_state(1, dtype=np.uint32)[0])
        return torch.Generator().manual_seed(seed), seed

    def train_step(self) -> dict[str, Any]:
        """One sample → score → update (→ commit) step; returns and logs its metrics."""
        cfg = self.config
        start = time.perf_counter()
        generator, seed = self._generator()
        noise = torch.randn((cfg.groups * cfg.group_size, *self.sample_shape), generator=generator)
        trajectory = sample_sde(self.policy, noise, cfg.sde, generator)
        with torch.no_grad():
            features = self.featurize(trajectory.samples).float().cpu().numpy()
        features = features.reshape(cfg.groups, cfg.group_size, -1)
        scores = self.source.score(features, seed)
        advantages = torch.as_tensor(scores.advantages.reshape(-1), dtype=torch.float32)
        stats = policy_update(
            self._train_module, self.optimizer, trajectory, advantages, cfg.sde, cfg.grpo, generator
        )
        self.step += 1
        if _every(self.step, cfg.commit_every):
            self.source.commit(features[: cfg.commit_groups].reshape(-1, features.shape[-1]))
        record = {
            "kind": "train",
            "step": self.step,
            "reward_mean": float(scores.rewards.mean()),
            "reward_std": float(scores.rewards.std()),
            "loss": stats.loss,
            "clip_fraction": stats.clip_fraction,
            "approx_kl": stats.approx_kl,
            "seconds": time.perf_counter() - start,
            **scores.info,
        }
        self._log(record)
        return record

    def run(self) -> list[dict[str, Any]]:
        """Train until ``config.steps`` (resuming if a checkpoint exists); returns the history."""
        cfg = self.config
        self._maybe_resume()
        if self.step == 0 and cfg.eval_every > 0:
            self._evaluate()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (cfg.progress and distributed.is_main()),
            desc=f"train[{cfg.seed}]",
            dynamic_ncols=True,
        )
        with bar:
            while self.step < cfg.steps:
                record = self.train_step()
                bar.update(1)
                bar.set_postfix(
                    reward=f"{record['reward_mean']:.4g}", kl=f"{record['approx_kl']:.2g}"
                )
                if _every(self.step, cfg.eval_every) or (
                    self.step == cfg.steps and cfg.eval_every > 0
                ):
                    self._evaluate()
                if cfg.checkpoint_every > 0 and (
                    _every(self.step, cfg.checkpoint_every) or self.step == cfg.steps
                ):
                    self.save_checkpoint()
        return self.history
