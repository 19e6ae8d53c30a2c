"""Prepare the cluster's digits reference once, before the trainers start.

Loads the demo's base networks (trained on first use and cached under ``out/cache``, a volume the
trainers share, so they never train them concurrently), then uploads the target and the initial
pool, in the CNN's feature space, to the service at ``DISTREWARD_URL`` with
``DISTREWARD_ADMIN_TOKEN`` - unless the reference already has a pool: a restarted cluster keeps
the pool its trainers have rolled.
"""

from __future__ import annotations

import logging
import os

from examples.digits.base import load_base
from examples.digits.config import DemoConfig
from examples.digits.runs import upload_reference
from reward_client import NotFound, RewardClient

log = logging.getLogger("init_reference")

READY_TIMEOUT = 300.0  # seconds for the service behind the load balancer to become ready


def has_pool(client: RewardClient, name: str) -> bool:
    """Whether the service already holds reference ``name`` with a pool."""
    try:
        return client.info(name).n > 0
    except NotFound:
        return False


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    name = os.environ.get("DISTREWARD_REFERENCE", "digits-base")
    config = DemoConfig().unconditional()  # the flow and CNN examples.digits.trainer_setup uses
    base = load_base(config)
    url, token = os.environ["DISTREWARD_URL"], os.environ["DISTREWARD_ADMIN_TOKEN"]
    with RewardClient(url, token=token) as client:
        client.wait_ready(timeout=READY_TIMEOUT)
        if has_pool(client, name):
            log.info("reference %s already has a pool: kept", name)
            return
        upload_reference(client, name, base, base.pool(config))
        log.info("reference %s uploaded", name)


if __name__ == "__main__":
    main()
