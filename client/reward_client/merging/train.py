"""``python -m reward_client.merging.train``: learn post-hoc merge weights of checkpoints on a
service.

::

    DISTREWARD_TOKEN=... python -m reward_client.merging.train --setup mypkg.flows:merge_setup \\
        --url http://reward:8000 --reference inception --steps 40 --out out/merge

``--setup module:function`` names a function without arguments that returns a
:class:`~reward_client.merging.trainer.MergeSetup`: the model whose weights each merge
overwrites, the checkpoints (a :class:`~reward_client.merging.merge.Snapshots`), the frozen
feature map and one sample's shape. The reference must hold a target and a pool (e.g.
features of the initial merge's samples). The trainer token comes from ``DISTREWARD_TOKEN``
(never from the command line). Writes ``<out>/checkpoint.pt`` (trainer state, resumed by
rerunning the same command), ``<out>/metrics.jsonl`` (as it goes) and ``<out>/weights.json``
(the learned merge, with every checkpoint).
"""

from __future__ import annotations

import argparse

from ..training import cli
from .policy import PolicyConfig
from .trainer import MergeConfig, MergeSetup, MergeTrainer

__all__ = ["main", "merge_config", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; defaults follow :class:`MergeConfig` and :class:`PolicyConfig`."""
    m, p = MergeConfig(), PolicyConfig()
    a = cli.parser("python -m reward_client.merging.train", __doc__, MergeSetup, m, True)
    a.add_argument("--candidates", type=int, default=m.candidates)
    a.add_argument("--group-size", type=int, default=m.group_size)
    a.add_argument("--ode-steps", type=int, default=m.ode_steps)
    a.add_argument("--kind", choices=["simplex", "affine"], default=p.kind)
    a.add_argument("--init-std", type=float, default=p.init_std)
    a.add_argument("--lr", type=float, default=p.lr)
    a.add_argument("--epochs", type=int, default=p.epochs, help="1: REINFORCE; >1: PPO-clip")
    return a.parse_args(argv)


def merge_config(args: argparse.Namespace) -> MergeConfig:
    """The :class:`MergeConfig` the arguments describe (no evaluation from the CLI)."""
    policy = PolicyConfig(kind=args.kind, init_std=args.init_std, lr=args.lr, epochs=args.epochs)
    return MergeConfig(
        **cli.run_settings(args),
        candidates=args.candidates,
        group_size=args.group_size,
        ode_steps=args.ode_steps,
        policy=policy,
    )


def main(argv: list[str] | None = None) -> None:
    """Train the merge policy until ``--steps`` (resuming ``<out>/checkpoint.pt``)."""
    args = parse_args(argv)
    cli.set_threads(args.threads)
    setup = cli.load_setup(args.setup, MergeSetup)
    with cli.service_rewards(args, "shared", setup.featurize) as source:
        trainer = MergeTrainer(
            setup.model, setup.snapshots, setup.featurize, setup.sample_shape, source,
            merge_config(args),
        )  # fmt: skip
        trainer.run()


if __name__ == "__main__":
    main()
