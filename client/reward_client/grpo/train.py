"""``python -m reward_client.grpo.train``: one GRPO worker (or ``torchrun`` rank) on a service.

::

    DISTREWARD_TOKEN=... python -m reward_client.grpo.train --setup mypkg.flows:build \\
        --url http://reward:8000 --reference inception --steps 200 --out out/train
    DISTREWARD_TOKEN=... torchrun --nproc_per_node 2 -m reward_client.grpo.train ...  # DDP ranks

``--setup module:function`` names a function without arguments that returns a
:class:`~reward_client.grpo.worker.TrainSetup`: the velocity model to fine-tune, the frozen
feature map, one sample's shape and, for a class-conditional model, its classes (then group g
of the step's groups over all ranks is class ``g % classes``, and the rewards are normalised
per class over the ranks' gathered batch). The trainer token comes from ``DISTREWARD_TOKEN``
(never from the command line). Rerun the same command to resume from ``<out>/checkpoint.pt``.

``--reward group`` (the default) posts each rank's groups for group rewards and commits
``--commit-groups`` groups every ``--commit-every`` steps; ``--reward credits`` asks per-sample
credits, committing ``--commit-fraction`` of every request in it, the ranks of a step in one
round ``{run id}/{step}``. ``--run-id`` names the rounds and the commit keys ``{run id}-{seed}``:
by default ``TORCHELASTIC_RUN_ID``, which torchrun gives every rank of one launch; give one of
your own to keep the keys over a resumed launch, so a replayed step commits once.
"""

from __future__ import annotations

import argparse
import os
import uuid

from .._sync_client import RewardClient
from ..reward_fn import COMMIT_FRACTION
from ..training import cli, distributed
from ..training.sde import SDEConfig
from ..training.sources import CreditRewards, RewardSource, ServiceRewards
from .update import GRPOConfig
from .worker import TrainerWorker, TrainSetup, WorkerConfig

__all__ = ["main", "parse_args", "reward_source", "worker_config"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; defaults follow :class:`WorkerConfig`, :class:`SDEConfig`, ..."""
    w, s, g = WorkerConfig(), SDEConfig(), GRPOConfig()
    p = cli.parser("python -m reward_client.grpo.train", __doc__, TrainSetup, w, False)
    p.add_argument("--reward", default="group", choices=["group", "credits"])
    p.add_argument("--mode", default="shared", choices=["shared", "independent"], help="group")
    p.add_argument(
        "--commit-fraction",
        type=float,
        default=COMMIT_FRACTION,
        help="credits: share of every request committed in it (0: none, the pool stalls)",
    )
    p.add_argument(
        "--run-id",
        default=os.environ.get("TORCHELASTIC_RUN_ID") or uuid.uuid4().hex[:16],
        help="credits: names the rounds and commit keys (the same on every rank)",
    )
    p.add_argument("--groups", type=int, default=w.groups)
    p.add_argument("--group-size", type=int, default=w.group_size)
    p.add_argument("--lr", type=float, default=w.lr)
    p.add_argument("--commit-groups", type=int, default=w.commit_groups)
    p.add_argument("--sde-steps", type=int, default=s.steps)
    p.add_argument("--noise", type=float, default=s.noise)
    p.add_argument("--clip", type=float, default=g.clip)
    p.add_argument("--minibatches", type=int, default=g.minibatches)
    return p.parse_args(argv)


def worker_config(args: argparse.Namespace, classes: int = 0) -> WorkerConfig:
    """The :class:`WorkerConfig` the arguments describe for a policy of ``classes`` classes (no
    evaluation from the CLI)."""
    return WorkerConfig(
        **cli.run_settings(args),
        groups=args.groups,
        group_size=args.group_size,
        lr=args.lr,
        commit_groups=args.commit_groups,
        classes=classes,
        sde=SDEConfig(steps=args.sde_steps, noise=args.noise),
        grpo=GRPOConfig(clip=args.clip, minibatches=args.minibatches),
    )


def reward_source(args: argparse.Namespace, client: RewardClient) -> RewardSource:
    """The rewards ``--reward`` asks of the service for ``--reference``."""
    if args.reward == "credits":
        share = args.commit_fraction or None
        return CreditRewards(client, args.reference, commit_fraction=share, run=args.run_id)
    return ServiceRewards(client, args.reference, mode=args.mode)


def main(argv: list[str] | None = None) -> None:
    """Run one worker (one rank under torchrun) until ``--steps``."""
    args = parse_args(argv)
    distributed.init()
    cli.set_threads(args.threads)
    try:
        _train(args)  # returns with the worker (its DDP module) unreferenced
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace) -> None:
    setup = cli.load_setup(args.setup, TrainSetup)
    with cli.service_client(args, setup.featurize) as client:
        worker = TrainerWorker(
            setup.policy,
            setup.featurize,
            setup.sample_shape,
            reward_source(args, client),
            worker_config(args, setup.classes),
        )
        worker.run()


if __name__ == "__main__":
    main()
