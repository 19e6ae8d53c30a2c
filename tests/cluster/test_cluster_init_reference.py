"""docker/trainer/init_reference.py, the compose job that uploads the digits reference: it keeps
a reference that already has a pool (a restarted cluster keeps its rolled pool)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import httpx
import numpy as np
import pytest
from cluster_support import DOCKER, REFERENCE, ROOT, Child, D, Tokens

from reward_client import RewardClient


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
