"""The trainer packages' public names (changing them is an API change: update this test)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

# One line of names per module, written as text: the pin is data, not a copy of the code.
SURFACE = {
    "reward_client.training": "",
    "reward_client.training.loop": "CHECKPOINT METRICS Evaluator Featurizer Record RunConfig "
    "Trainer every",
    "reward_client.training.sources": "CreditRewards LeaveOneOutCredits PerSampleRewards "
    "RewardSource Scores ServiceRewards normalise per_prompt",
    "reward_client.training.sde": "SDEConfig Trajectory VelocityModel gaussian_log_prob "
    "sample_ode sample_sde step_log_prob time_grid transition velocity",
    "reward_client.training.ppo": "StepStats UpdateStats ppo_clip_loss ppo_step",
    "reward_client.training.distributed": "all_gather barrier init is_main rank shutdown "
    "world_size wrap",
    "reward_client.training.cli": "load_setup parser run_settings service_client "
    "service_rewards set_threads",
    "reward_client.grpo": "",
    "reward_client.grpo.update": "GRPOConfig policy_update",
    "reward_client.grpo.worker": "TrainSetup TrainerWorker WorkerConfig",
    "reward_client.grpo.train": "main parse_args reward_source worker_config",
    "reward_client.merging": "",
    "reward_client.merging.merge": "Checkpoint Snapshots StateDict Weights merge_into merged",
    "reward_client.merging.policy": "CoefficientPolicy Kind PolicyConfig helmert policy_step",
    "reward_client.merging.trainer": "WEIGHTS MergeConfig MergeSetup MergeTrainer",
    "reward_client.merging.train": "main merge_config parse_args",
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_exported_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(SURFACE[module].split())
    for name in mod.__all__:
        assert hasattr(mod, name)


def test_the_client_and_its_reward_sources_stay_torch_free() -> None:
    # "Any trainer" installs the client without torch; the reward sources are numpy only too.
    code = "import sys, reward_client, reward_client.training.sources\n"
    code += "assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_both_trainers_run_on_the_one_loop() -> None:
    from reward_client.grpo.worker import TrainerWorker, WorkerConfig
    from reward_client.merging.trainer import MergeConfig, MergeTrainer
    from reward_client.training.loop import RunConfig, Trainer

    assert issubclass(TrainerWorker, Trainer) and issubclass(MergeTrainer, Trainer)
    assert issubclass(WorkerConfig, RunConfig) and issubclass(MergeConfig, RunConfig)
    for trainer in (TrainerWorker, MergeTrainer):  # the loop itself is written once
        assert all(name not in vars(trainer) for name in ("run", "train_step", "state_dict"))
