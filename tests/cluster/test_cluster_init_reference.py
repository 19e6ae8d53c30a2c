"""docker/trainer/init_reference.py, the compose job that uploads the digits reference: it keeps
a reference that already has a pool (a restarted cluster keeps its rolled pool), and sizes a new
pool for the trainers that will roll it."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import httpx
import numpy as np
import pytest
from cluster_support import DOCKER, REFERENCE, ROOT, Child, D, Tokens, load_yaml

from examples.digits.config import DemoConfig
from reward_client import ClientConfig, RewardClient
from reward_client.grpo.worker import WorkerConfig


@pytest.fixture(scope="module")
def init_reference() -> ModuleType:
    """The script as a module; it imports ``examples`` from the repository root, as the trainer
    image's ``PYTHONPATH=/app`` provides."""
    spec = importlib.util.spec_from_file_location(
        "init_reference", DOCKER / "trainer" / "init_reference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT))
        spec.loader.exec_module(module)
    return module


def test_has_pool_only_for_a_reference_with_a_pool(
    init_reference: ModuleType, services: list[Child], tokens: Tokens
) -> None:
    url = services[0].url
    target = {"features": np.random.default_rng(2).normal(size=(32, D)).tolist()}
    answer = httpx.put(
        f"{url}/v1/references/target-only/target",
        json=target,
        params={"accept_unknown_feature_space": "true"},
        headers={"Authorization": f"Bearer {tokens.admin}"},
        timeout=30.0,
    )
    assert answer.status_code == 200, answer.text
    with RewardClient(url, token=tokens.admin) as client:
        assert init_reference.has_pool(client, REFERENCE)
        assert not init_reference.has_pool(client, "target-only")
        assert not init_reference.has_pool(client, "never-uploaded")


@pytest.mark.parametrize("trainers", [1, 4])
def test_the_pool_is_sized_so_that_its_trainers_keep_it_fresh(
    init_reference: ModuleType, trainers: int
) -> None:
    worker = WorkerConfig()
    rows = init_reference.pool_rows(trainers)
    steps = rows / (trainers * worker.commit_groups * worker.group_size / worker.commit_every)
    # renewed in fewer steps than the client warns at, and more rows than features (a regular
    # pool: N <= d would be singular)
    assert steps == pytest.approx(init_reference.TURNOVER_STEPS, rel=0.01)
    assert steps < ClientConfig().turnover_steps
    assert rows > DemoConfig().unconditional().classifier.width
    with pytest.raises(ValueError, match="DISTREWARD_TRAINERS"):
        init_reference.pool_rows(0)


def test_the_cluster_trainer_commits_what_the_pool_is_sized_for() -> None:
    """pool_rows reads the commit volume from WorkerConfig's defaults (group rewards, one group
    committed a step): compose's trainer must not change it on its command line."""
    command = load_yaml(ROOT / "compose.yaml")["services"]["trainer"]["command"]
    volume = {"--groups", "--group-size", "--commit-groups", "--commit-every", "--reward"}
    assert not volume & set(command), command
