"""The run loop every trainer shares: steps, history, evaluation, checkpoints, log, resume.

A trainer subclasses :class:`Trainer` and implements :meth:`Trainer.update`, one step's
sample → score → policy update (→ commit). :meth:`Trainer.run` does everything else:

- advances ``step`` and keeps ``history``: one ``"kind": "train"`` record per step (the
  update's metrics plus ``step`` and ``seconds``) and ``"kind": "eval"`` records;
- evaluates at step 0, every ``eval_every`` steps and at the end (when an evaluator is given);
- appends every record to ``out_dir/metrics.jsonl`` as it is made;
- writes ``out_dir/checkpoint.pt`` (policy, optimizer, step, history; temporary file, then
  rename) every ``checkpoint_every`` steps and at the end;
- resumes from that checkpoint when ``resume`` is set and it exists, rewriting the log so it
  holds exactly the restored history;
- shows a progress bar.

Under ``torchrun`` every rank steps; only rank 0 evaluates, writes files and shows progress, and
the ranks return from :meth:`Trainer.run` together, once rank 0 wrote its last checkpoint.
"""

from __future__ import annotations

import abc
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .sources import RewardSource

__all__ = [
    "CHECKPOINT",
    "METRICS",
    "Evaluator",
    "Featurizer",
    "Record",
    "RunConfig",
    "Trainer",
    "every",
]

Featurizer = Callable[[torch.Tensor], torch.Tensor]
"""Maps samples (B, ...) to features (B, d)."""

Evaluator = Callable[[nn.Module], dict[str, float]]
"""Scores a model (e.g. FID of fixed-seed ODE samples); called on rank 0."""

Record = dict[str, Any]
"""One line of the history and of ``metrics.jsonl``."""

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class RunConfig:
    """Settings of the run loop, shared by every trainer's config (which adds its own).

    Attributes:
        steps: total policy updates.
        commit_every: commit to the reward source every this many steps (0: never).
        eval_every: evaluate every this many steps, plus at the start and end (0: never).
        checkpoint_every: write a checkpoint every this many steps, plus at the end (0: never).
        seed: base seed of all sampling randomness.
        out_dir: checkpoints and ``metrics.jsonl`` go here (None: nothing is written).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists.
        progress: show a progress bar.
    """

    steps: int = 200
    commit_every: int = 1
    eval_every: int = 25
    checkpoint_every: int = 50
    seed: int = 0
    out_dir: Path | None = None
    resume: bool = True
    progress: bool = True


def every(step: int, period: int) -> bool:
    """Whether ``step`` falls on a schedule of ``period`` (0: never)."""
    return period > 0 and step % period == 0


C = TypeVar("C", bound=RunConfig)


class Trainer(abc.ABC, Generic[C]):
    """A policy, its optimizer and a reward source, stepped by :meth:`run`.

    Args:
        policy: the module whose parameters the optimizer trains (checkpointed with it).
        optimizer: the optimizer of ``policy``.
        source: the reward provider (:class:`~reward_client.training.sources.RewardSource`).
        featurize: frozen feature map applied to generated samples.
        sample_shape: shape of one sample, e.g. ``(1, 8, 8)``.
        config: run settings.
        evaluate: optional evaluation callback, logged with ``"kind": "eval"``.
    """

    label: ClassVar[str] = "train"
    """Name on the progress bar."""

    def __init__(
        self,
        *,
        policy: nn.Module,
        optimizer: torch.optim.Optimizer,
        source: RewardSource,
        featurize: Featurizer,
        sample_shape: tuple[int, ...],
        config: C,
        evaluate: Evaluator | None = None,
    ) -> None:
        self.policy = policy
        self.optimizer = optimizer
        self.source = source
        self.featurize = featurize
        self.sample_shape = tuple(sample_shape)
        self.config = config
        self.evaluate = evaluate
        self.step = 0
        self.history: list[Record] = []

    # -- what a trainer implements --------------------------------------------------------------

    @abc.abstractmethod
    def update(self) -> Record:
        """One step at ``self.step`` (steps done so far): sample, score, update the policy and
        commit when :attr:`commit_due`; returns the metrics worth logging."""

    def evaluated_model(self) -> tuple[nn.Module, Record]:
        """The model :attr:`evaluate` scores, and extra fields for its record."""
        return self.policy, {}

    def write_outputs(self, out_dir: Path) -> None:
        """Files written beside each checkpoint (none by default)."""

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Policy, optimizer, step counter and the metrics history (copied)."""
        return {
            "step": self.step,
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.history = int(state["step"]), list(state["history"])

    @property
    def checkpoint_path(self) -> Path | None:
        """``out_dir/checkpoint.pt``, or None when the run writes nothing."""
        out = self.config.out_dir
        return None if out is None else Path(out) / CHECKPOINT

    def save_checkpoint(self) -> None:
        """Write the state atomically (temporary file, then rename) and :meth:`write_outputs`;
        rank 0 only."""
        path = self.checkpoint_path
        if path is None or not distributed.is_main():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        self.write_outputs(path.parent)

    def resume(self) -> bool:
        """Load ``out_dir/checkpoint.pt`` if ``resume`` is set and it exists; the log is
        rewritten to hold exactly the restored history. Returns whether it resumed."""
        path = self.checkpoint_path
        if not (self.config.resume and path is not None and path.exists()):
            return False
        self.load_state_dict(torch.load(path, weights_only=True))
        if distributed.is_main():
            lines = "".join(json.dumps(r) + "\n" for r in self.history)
            (path.parent / METRICS).write_text(lines)
        return True

    # -- the loop ------------------------------------------------------------------------------

    @property
    def commit_due(self) -> bool:
        """Whether the step being taken commits (every ``commit_every`` steps)."""
        return every(self.step + 1, self.config.commit_every)

    def step_seed(self, *streams: int) -> int:
        """The 32-bit seed of the current step's randomness, drawn from
        ``(seed, *streams, step)`` (e.g. the rank as a stream)."""
        seq = np.random.SeedSequence([self.config.seed, *streams, self.step])
        return int(seq.generate_state(1, dtype=np.uint32)[0])

    def log(self, record: Record) -> Record:
        """Append ``record`` to the history and (rank 0) to ``out_dir/metrics.jsonl``."""
        self.history.append(record)
        out = self.config.out_dir
        if out is not None and distributed.is_main():
            Path(out).mkdir(parents=True, exist_ok=True)
            with open(Path(out) / METRICS, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        return record

    def evaluate_now(self) -> None:
        """Log an evaluation of :meth:`evaluated_model` at the current step (rank 0)."""
        if self.evaluate is None or not distributed.is_main():
            return
        model, extra = self.evaluated_model()
        self.log({"kind": "eval", "step": self.step, **extra, **self.evaluate(model)})

    def train_step(self) -> Record:
        """One :meth:`update`; advances the step, logs and returns its record."""
        start = time.perf_counter()
        metrics = self.update()
        self.step += 1
        record = {"kind": "train", "step": self.step, **metrics}
        return self.log({**record, "seconds": time.perf_counter() - start})

    def run(self) -> list[Record]:
        """Train until ``config.steps`` (resuming if a checkpoint exists); returns the history."""
        cfg = self.config
        self.resume()
        if self.step == 0 and cfg.eval_every > 0:
            self.evaluate_now()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (cfg.progress and distributed.is_main()),
            desc=f"{self.label}[{cfg.seed}]",
            dynamic_ncols=True,
        )
        with bar:
            while self.step < cfg.steps:
                record = self.train_step()
                bar.update(1)
                bar.set_postfix(
                    reward=f"{record['reward_mean']:.4g}", kl=f"{record['approx_kl']:.2g}"
                )
                last = self.step == cfg.steps
                if cfg.eval_every > 0 and (every(self.step, cfg.eval_every) or last):
                    self.evaluate_now()
                if cfg.checkpoint_every > 0 and (every(self.step, cfg.checkpoint_every) or last):
                    self.save_checkpoint()
        distributed.barrier()  # the ranks return together, after rank 0's last checkpoint
        return self.history
