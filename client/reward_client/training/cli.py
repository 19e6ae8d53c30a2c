"""What every trainer's command line shares: ``--setup`` loading, the service connection, the
run-loop options, torch threads.

A trainer's ``train.py`` builds its parser with :func:`parser` (which adds the common options),
adds its own, turns the arguments into its config with ``**run_settings(args)`` and runs inside
:func:`service_rewards`. The trainer token comes from ``DISTREWARD_TOKEN``, never from the
command line. The features' space is the setup's feature map's when it is an extractor of
``reward_client.features`` (``--feature-space`` or ``DISTREWARD_FEATURE_SPACE`` otherwise), and
the client sends it with every request.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from .._sync_client import RewardClient
from .._types import Mode
from .loop import RunConfig
from .sources import ServiceRewards

__all__ = [
    "load_setup",
    "parser",
    "run_settings",
    "service_client",
    "service_rewards",
    "set_threads",
]

S = TypeVar("S")


def load_setup(spec: str, kind: type[S]) -> S:
    """Import ``module:function``, call it and check that it returned a ``kind``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--setup must look like 'package.module:function', got {spec!r}")
    setup = getattr(importlib.import_module(module_name), attr)()
    if not isinstance(setup, kind):
        raise TypeError(f"{spec} returned {type(setup).__name__}, expected {kind.__name__}")
    return setup


def parser(
    prog: str, description: str | None, kind: type, defaults: RunConfig, out_required: bool
) -> argparse.ArgumentParser:
    """A parser with the options every trainer takes; defaults from ``defaults``.

    ``--setup`` names a function returning a ``kind``; ``--out`` is the run's ``out_dir``.
    """
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--setup", required=True, help=f"module:function returning a {kind.__name__}")
    p.add_argument("--url", default=os.environ.get("DISTREWARD_URL", "http://127.0.0.1:8000"))
    p.add_argument("--reference", required=True, help="reference name on the service")
    p.add_argument("--out", type=Path, required=out_required, help="checkpoint and metrics.jsonl")
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--commit-every", type=int, default=defaults.commit_every)
    p.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: cores / ranks)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--feature-space",
        help="identifier of the features' space (default: the setup's extractor's, else "
        "DISTREWARD_FEATURE_SPACE)",
    )
    return p


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`RunConfig` fields :func:`parser`'s options set (no evaluation from a CLI)."""
    return {
        "steps": args.steps,
        "commit_every": args.commit_every,
        "eval_every": 0,
        "checkpoint_every": args.checkpoint_every,
        "seed": args.seed,
        "out_dir": args.out,
        "progress": not args.no_progress,
    }


def set_threads(threads: int) -> None:
    """``threads`` torch threads, or (0) the cores shared among the node's ``torchrun`` ranks."""
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // local_ranks))


@contextmanager
def service_client(
    args: argparse.Namespace, featurize: Callable[..., Any]
) -> Iterator[RewardClient]:
    """A client of the service at ``--url`` that posts features ``featurize`` makes, in
    ``--feature-space`` or (an extractor's) ``featurize.feature_space``; closed on exit."""
    space = args.feature_space or getattr(featurize, "feature_space", None)
    token = os.environ.get("DISTREWARD_TOKEN")
    with RewardClient(args.url, token=token, feature_space=space) as client:
        yield client


@contextmanager
def service_rewards(
    args: argparse.Namespace, mode: Mode, featurize: Callable[..., Any]
) -> Iterator[ServiceRewards]:
    """Group rewards from :func:`service_client` for ``--reference``; the connection is closed
    on exit."""
    with service_client(args, featurize) as client:
        yield ServiceRewards(client, args.reference, mode=mode)
