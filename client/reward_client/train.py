"""``python -m reward_client.train``: one trainer worker (or one ``torchrun`` rank) on a service.

::

    DISTREWARD_TOKEN=... python -m reward_client.train --setup mypkg.flows:build \\
        --url http://reward:8000 --reference inception --steps 200 --out out/train
    DISTREWARD_TOKEN=... torchrun --nproc_per_node 2 -m reward_client.train ...  # DDP ranks

``--setup module:function`` names a function without arguments that returns a
:class:`TrainSetup`: the velocity model to fine-tune, the frozen feature map and one sample's
shape. The trainer token comes from ``DISTREWARD_TOKEN`` (never from the command line). Rerun
the same command to resume from ``<out>/checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

import torch

from . import distributed
from ._client import RewardClient
from .grpo import GRPOConfig
from .sde import SDEConfig
from .sources import ServiceRewards
from .worker import TrainerWorker, TrainSetup, WorkerConfig

__all__ = ["load_setup", "main", "parse_args", "worker_config"]


def load_setup(spec: str) -> TrainSetup:
    """Import ``module:function`` and call it."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--setup must look like 'package.module:function', got {spec!r}")
    setup = getattr(importlib.import_module(module_name), attr)()
    if not isinstance(setup, TrainSetup):
        raise TypeError(f"{spec} returned {type(setup).__name__}, expected TrainSetup")
    return setup


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; defaults follow :class:`WorkerConfig`, :class:`SDEConfig`, ..."""
    w, s, g = WorkerConfig(), SDEConfig(), GRPOConfig()
    p = argparse.ArgumentParser(prog="python -m reward_client.train", description=__doc__)
    p.add_argument("--setup", required=True, help="module:function returning a TrainSetup")
    p.add_argument("--url", default=os.environ.get("DISTREWARD_URL", "http://127.0.0.1:8000"))
    p.add_argument("--reference", required=True, help="reference name on the service")
    p.add_argument("--mode", default="shared", choices=["shared", "independent"])
    p.add_argument("--out", type=Path, default=None, help="checkpoints and metrics.jsonl")
    p.add_argument("--steps", type=int, default=w.steps)
    p.add_argument("--groups", type=int, default=w.groups)
    p.add_argument("--group-size", type=int, default=w.group_size)
    p.add_argument("--lr", type=float, default=w.lr)
    p.add_argument("--commit-every", type=int, default=w.commit_every)
    p.add_argument("--commit-groups", type=int, default=w.commit_groups)
    p.add_argument("--checkpoint-every", type=int, default=w.checkpoint_every)
    p.add_argument("--seed", type=int, default=w.seed)
    p.add_argument("--sde-steps", type=int, default=s.steps)
    p.add_argument("--noise", type=float, default=s.noise)
    p.add_argument("--clip", type=float, default=g.clip)
    p.add_argument("--minibatches", type=int, default=g.minibatches)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: cores / ranks)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def worker_config(args: argparse.Namespace) -> WorkerConfig:
    """The :class:`WorkerConfig` the arguments describe (no evaluation from the CLI)."""
    return WorkerConfig(
        steps=args.steps,
        groups=args.groups,
        group_size=args.group_size,
        lr=args.lr,
        commit_every=args.commit_every,
        commit_groups=args.commit_groups,
        eval_every=0,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        out_dir=args.out,
        progress=not args.no_progress,
        sde=SDEConfig(steps=args.sde_steps, noise=args.noise),
        grpo=GRPOConfig(clip=args.clip, minibatches=args.minibatches),
    )


def main(argv: list[str] | None = None) -> None:
    """Run one worker (one rank under torchrun) until ``--steps``."""
    args = parse_args(argv)
    distributed.init()
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_ranks))
    try:
        setup = load_setup(args.setup)
        with RewardClient(args.url, token=os.environ.get("DISTREWARD_TOKEN")) as client:
            source = ServiceRewards(client, args.reference, mode=args.mode)
            worker = TrainerWorker(
                setup.policy, setup.featurize, setup.sample_shape, source, worker_config(args)
            )
            worker.run()
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
