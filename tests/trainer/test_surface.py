"""The trainer modules' public names (changing them is an API change: update this test)."""

from __future__ import annotations

import importlib

import pytest

SURFACE = {
    "reward_client.sde": {
        "SDEConfig",
        "Trajectory",
        "VelocityModel",
        "gaussian_log_prob",
        "sample_ode",
        "sample_sde",
        "step_log_prob",
        "time_grid",
        "transition",
    },
    "reward_client.grpo": {"GRPOConfig", "UpdateStats", "policy_update", "ppo_clip_loss"},
    "reward_client.sources": {
        "PerSampleRewards",
        "RewardSource",
        "Scores",
        "ServiceRewards",
        "normalise",
    },
    "reward_client.worker": {
        "Evaluator",
        "Featurizer",
        "TrainSetup",
        "TrainerWorker",
        "WorkerConfig",
    },
    "reward_client.distributed": {"init", "is_main", "rank", "shutdown", "world_size", "wrap"},
    "reward_client.train": {"load_setup", "main", "parse_args", "worker_config"},
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_exported_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == SURFACE[module]
    for name in mod.__all__:
        assert hasattr(mod, name)


def test_the_client_core_stays_torch_free() -> None:
    import subprocess
    import sys

    code = "import sys, reward_client, reward_client.sources; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
