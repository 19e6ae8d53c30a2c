"""``python -m reward_client.grpo.train``: one GRPO worker (or ``torchrun`` rank) on a service.

::

    DISTREWARD_TOKEN=... python -m reward_client.grpo.train --setup mypkg.flows:build \\
        --url http://reward:8000 --reference inception --steps 200 --out out/train
    DISTREWARD_TOKEN=... torchrun --nproc_per_node 2 -m reward_client.grpo.train ...  # DDP ranks

``--setup module:function`` names a function without arguments that returns a
:class:`~reward_client.grpo.worker.TrainSetup`: the velocity model to fine-tune, the frozen
feature map and one sample's shape. The trainer token comes from ``DISTREWARD_TOKEN`` (never
from the command line). Rerun the same command to resume from ``<out>/checkpoint.pt``.
"""

from __future__ import annotations

import argparse

from ..training import cli, distributed
from ..training.sde import SDEConfig
from .update import GRPOConfig
from .worker import TrainerWorker, TrainSetup, WorkerConfig

__all__ = ["main", "parse_args", "worker_config"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; defaults follow :class:`WorkerConfig`, :class:`SDEConfig`, ..."""
    w, s, g = WorkerConfig(), SDEConfig(), GRPOConfig()
    p = cli.parser("python -m reward_client.grpo.train", __doc__, TrainSetup, w, False)
    p.add_argument("--mode", default="shared", choices=["shared", "independent"])
    p.add_argument("--groups", type=int, default=w.groups)
    p.add_argument("--group-size", type=int, default=w.group_size)
    p.add_argument("--lr", type=float, default=w.lr)
    p.add_argument("--commit-groups", type=int, default=w.commit_groups)
    p.add_argument("--sde-steps", type=int, default=s.steps)
    p.add_argument("--noise", type=float, default=s.noise)
    p.add_argument("--clip", type=float, default=g.clip)
    p.add_argument("--minibatches", type=int, default=g.minibatches)
    return p.parse_args(argv)


def worker_config(args: argparse.Namespace) -> WorkerConfig:
    """The :class:`WorkerConfig` the arguments describe (no evaluation from the CLI)."""
    return WorkerConfig(
        **cli.run_settings(args),
        groups=args.groups,
        group_size=args.group_size,
        lr=args.lr,
        commit_groups=args.commit_groups,
        sde=SDEConfig(steps=args.sde_steps, noise=args.noise),
        grpo=GRPOConfig(clip=args.clip, minibatches=args.minibatches),
    )


def main(argv: list[str] | None = None) -> None:
    """Run one worker (one rank under torchrun) until ``--steps``."""
    args = parse_args(argv)
    distributed.init()
    cli.set_threads(args.threads)
    try:
        setup = cli.load_setup(args.setup, TrainSetup)
        with cli.service_rewards(args, args.mode, setup.featurize) as source:
            worker = TrainerWorker(
                setup.policy, setup.featurize, setup.sample_shape, source, worker_config(args)
            )
            worker.run()
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
