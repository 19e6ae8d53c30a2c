"""``python -m reward_client.merge_cli``: learn post-hoc merge weights of checkpoints on a service.

::

    DISTREWARD_TOKEN=... python -m reward_client.merge_cli --setup mypkg.flows:merge_setup \\
        --url http://reward:8000 --reference inception --steps 40 --out out/merge

``--setup module:function`` names a function without arguments that returns a
:class:`~reward_client.merge_trainer.MergeSetup`: the model whose weights each merge
overwrites, the checkpoints (a :class:`~reward_client.merge.Snapshots`), the frozen
feature map and one sample's shape. The reference must hold a target and a pool (e.g.
features of the initial merge's samples). The trainer token comes from ``DISTREWARD_TOKEN``
(never from the command line). Writes ``<out>/checkpoint.pt`` (trainer state, resumed by
rerunning the same command), ``<out>/metrics.jsonl`` and ``<out>/weights.json`` (the learned
merge).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path

import torch

from ._client import RewardClient
from .merge_policy import PolicyConfig
from .merge_trainer import MergeConfig, MergeSetup, MergeTrainer
from .sources import ServiceRewards

__all__ = ["load_merge_setup", "main", "merge_config", "parse_args"]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
WEIGHTS = "weights.json"


def load_merge_setup(spec: str) -> MergeSetup:
    """Import ``module:function`` and call it; the result must be a :class:`MergeSetup`."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--setup must look like 'package.module:function', got {spec!r}")
    setup = getattr(importlib.import_module(module_name), attr)()
    if not isinstance(setup, MergeSetup):
        raise TypeError(f"{spec} returned {type(setup).__name__}, expected MergeSetup")
    return setup


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; defaults follow :class:`MergeConfig` and :class:`PolicyConfig`."""
    m, p = MergeConfig(), PolicyConfig()
    a = argparse.ArgumentParser(prog="python -m reward_client.merge_cli", description=__doc__)
    a.add_argument("--setup", required=True, help="module:function returning a MergeSetup")
    a.add_argument("--url", default=os.environ.get("DISTREWARD_URL", "http://127.0.0.1:8000"))
    a.add_argument("--reference", required=True, help="reference name on the service")
    a.add_argument("--out", type=Path, required=True, help="checkpoint, metrics, weights")
    a.add_argument("--steps", type=int, default=m.steps)
    a.add_argument("--candidates", type=int, default=m.candidates)
    a.add_argument("--group-size", type=int, default=m.group_size)
    a.add_argument("--ode-steps", type=int, default=m.ode_steps)
    a.add_argument("--commit-every", type=int, default=m.commit_every)
    a.add_argument("--seed", type=int, default=m.seed)
    a.add_argument("--kind", choices=["simplex", "affine"], default=p.kind)
    a.add_argument("--init-std", type=float, default=p.init_std)
    a.add_argument("--lr", type=float, default=p.lr)
    a.add_argument("--epochs", type=int, default=p.epochs, help="1: REINFORCE; >1: PPO-clip")
    a.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    a.add_argument("--no-progress", action="store_true")
    return a.parse_args(argv)


def merge_config(args: argparse.Namespace) -> MergeConfig:
    """The :class:`MergeConfig` the arguments describe (no evaluation from the CLI)."""
    policy = PolicyConfig(kind=args.kind, init_std=args.init_std, lr=args.lr, epochs=args.epochs)
    return MergeConfig(
        steps=args.steps,
        candidates=args.candidates,
        group_size=args.group_size,
        ode_steps=args.ode_steps,
        commit_every=args.commit_every,
        eval_every=0,
        seed=args.seed,
        progress=not args.no_progress,
        policy=policy,
    )


def _save(trainer: MergeTrainer, out: Path) -> None:
    """Checkpoint (atomic rename), the metrics log and the learned weights."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"{CHECKPOINT}.tmp"
    torch.save(trainer.state_dict(), tmp)
    os.replace(tmp, out / CHECKPOINT)
    (out / METRICS).write_text("".join(json.dumps(r) + "\n" for r in trainer.history))
    weights = {"step": trainer.step, "weights": trainer.policy.mean_weights().tolist()}
    (out / WEIGHTS).write_text(json.dumps(weights) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Train the merge policy until ``--steps`` (resuming ``<out>/checkpoint.pt``), then save."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    setup = load_merge_setup(args.setup)
    with RewardClient(args.url, token=os.environ.get("DISTREWARD_TOKEN")) as client:
        trainer = MergeTrainer(
            setup.model,
            setup.snapshots,
            setup.featurize,
            setup.sample_shape,
            ServiceRewards(client, args.reference, mode="shared"),
            merge_config(args),
        )
        if (args.out / CHECKPOINT).exists():
            trainer.load_state_dict(torch.load(args.out / CHECKPOINT, weights_only=True))
        try:
            trainer.run()
        finally:  # an interrupted run keeps its completed steps
            _save(trainer, args.out)


if __name__ == "__main__":
    main()
