"""The same rewards on CUDA as on the CPU (skipped where no GPU is present)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_data import features, spectrum_basis, target_of

from reward_service.engine import RewardEngine

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("method", ["lowrank", "exact"])
@pytest.mark.parametrize("mode", ["shared", "independent"])
def test_gpu_rewards_equal_cpu_rewards(method: str, mode: str) -> None:
    rng = np.random.default_rng(0)
    d = 256
    mu, sigma = target_of(rng, d, 1e4)
    basis = spectrum_basis(rng, d, 100.0)
    pool = features(rng, 3000, basis, 0.3)
    groups = features(rng, 16 * 16, basis * 1.1, 0.35).reshape(16, 16, d)
    results = []
    for device in ("cpu", "cuda"):
        engine = RewardEngine(mu, sigma, pool, device=device)
        engine.commit(groups[0])
        results.append(engine.rewards(groups, mode=mode, seed=5, method=method))
    cpu, gpu = results
    np.testing.assert_array_equal(cpu.indices, gpu.indices)
    np.testing.assert_allclose(gpu.rewards, cpu.rewards, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gpu.fds, cpu.fds, rtol=1e-9)
    assert gpu.version == cpu.version == 1


def test_default_device_is_cuda_when_present() -> None:
    rng = np.random.default_rng(1)
    mu, sigma = target_of(rng, 8, 10.0)
    engine = RewardEngine(mu, sigma, rng.normal(size=(20, 8)))
    assert engine.device.type == "cuda"
