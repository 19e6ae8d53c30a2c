"""Prepare the cluster's digits reference once, before the trainers start.

Loads the demo's base networks (trained on first use and cached under ``out/cache``, a volume the
trainers share, so they never train them concurrently), then uploads the target and the initial
pool, in the CNN's feature space, to the service at ``DISTREWARD_URL`` with
``DISTREWARD_ADMIN_TOKEN`` - unless the reference already has a pool: a restarted cluster keeps
the pool its trainers have rolled.

The pool is sized for the trainers that will roll it (README, "Sizing a pool"): the cluster's
trainer commits one group of 32 samples a step, and ``DISTREWARD_TRAINERS`` of them (1, or the
count given to ``--scale trainer=N``) renew the pool in :data:`TURNOVER_STEPS` steps.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from examples.digits.base import load_base
from examples.digits.config import DemoConfig
from examples.digits.runs import upload_reference
from reward_client import NotFound, RewardClient
from reward_client.grpo.worker import WorkerConfig

log = logging.getLogger("init_reference")

READY_TIMEOUT = 300.0  # seconds for the service behind the load balancer to become ready
# Steps in which the trainers' commits renew the pool: 3% of the pool a step (33 steps) kept
# per-sample credits fresh, 0.8% (125 steps) lost most of their gain, and the client warns past
# 60 (DESIGN.md sections 8 and 9).
TURNOVER_STEPS = 32


def pool_rows(trainers: int, worker: WorkerConfig | None = None) -> int:
    """Rows of a pool that ``trainers`` workers of ``python -m reward_client.grpo.train`` (at
    ``worker``'s settings, its command line's defaults when None) renew in
    :data:`TURNOVER_STEPS` steps: each commits ``commit_groups`` groups of ``group_size``
    every ``commit_every`` steps."""
    if trainers < 1:
        raise ValueError(f"DISTREWARD_TRAINERS must be at least 1, got {trainers}")
    worker = worker or WorkerConfig()
    per_step = trainers * worker.commit_groups * worker.group_size / worker.commit_every
    return round(per_step * TURNOVER_STEPS)


def has_pool(client: RewardClient, name: str) -> bool:
    """Whether the service already holds reference ``name`` with a pool."""
    try:
        return client.info(name).n > 0
    except NotFound:
        return False


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    name = os.environ.get("DISTREWARD_REFERENCE", "digits-base")
    trainers = int(os.environ.get("DISTREWARD_TRAINERS", "1"))
    # the flow and CNN examples.digits.trainer_setup uses, with the pool its trainers renew
    config = dataclasses.replace(DemoConfig().unconditional(), pool_size=pool_rows(trainers))
    base = load_base(config)
    url, token = os.environ["DISTREWARD_URL"], os.environ["DISTREWARD_ADMIN_TOKEN"]
    with RewardClient(url, token=token) as client:
        client.wait_ready(timeout=READY_TIMEOUT)
        if has_pool(client, name):
            log.info("reference %s already has a pool: kept", name)
            return
        upload_reference(client, name, base, base.pool(config))
        log.info(
            "reference %s uploaded (pool of %d rows for %d trainer(s))",
            name,
            config.pool_size,
            trainers,
        )


if __name__ == "__main__":
    main()
