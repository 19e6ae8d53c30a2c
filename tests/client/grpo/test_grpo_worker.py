"""Trainer worker: resume reproduces the uninterrupted run; commit and evaluation cadence; the
classes and per-class advantages of ranks that train together."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from trainer_toy import AffineVelocity, ConditionalAffine, MeanReward, conditional_rank

from reward_client.grpo import worker as worker_module
from reward_client.grpo.worker import TrainerWorker, TrainSetup, WorkerConfig
from reward_client.training.ppo import UpdateStats
from reward_client.training.sde import SDEConfig
from reward_client.training.sources import Scores


def _config(out: Path | None, steps: int, **overrides: object) -> WorkerConfig:
    settings: dict[str, object] = {
        "steps": steps,
        "groups": 4,
        "group_size": 8,
        "lr": 1e-2,
        "eval_every": 0,
        "checkpoint_every": 2,
        "out_dir": out,
        "progress": False,
        "sde": SDEConfig(steps=4, noise=0.5),
        **overrides,
    }
    return WorkerConfig(**settings)  # type: ignore[arg-type]


def _worker(config: WorkerConfig, source: MeanReward | None = None, evaluate=None) -> TrainerWorker:
    return TrainerWorker(
        AffineVelocity(4, seed=0), nn.Identity(), (4,), source or MeanReward(), config, evaluate
    )


def _train_records(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history if r["kind"] == "train"]


def test_resumed_run_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    straight = _worker(_config(tmp_path / "a", 4))
    straight.run()

    first = _worker(_config(tmp_path / "b", 2))
    first.run()
    resumed = _worker(_config(tmp_path / "b", 4))
    resumed.run()

    assert resumed.step == straight.step == 4
    for p, q in zip(straight.policy.parameters(), resumed.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    assert _train_records(resumed.history) == _train_records(straight.history)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]


def test_state_dict_round_trip() -> None:
    worker = _worker(_config(None, 2))
    worker.run()
    clone = _worker(_config(None, 2))
    clone.load_state_dict(worker.state_dict())
    assert clone.step == 2
    moments = clone.optimizer.state_dict()["state"]
    assert moments.keys() == worker.optimizer.state_dict()["state"].keys()
    for p, q in zip(worker.policy.parameters(), clone.policy.parameters(), strict=True):
        assert torch.equal(p, q)


def test_commits_every_m_steps_and_evaluates_on_schedule() -> None:
    source = MeanReward()
    steps_seen: list[int] = []

    def evaluate(policy: nn.Module) -> dict[str, float]:
        steps_seen.append(worker.step)
        return {"score": 1.0}

    config = _config(None, 5, commit_every=2, commit_groups=2, eval_every=2)
    worker = _worker(config, source, evaluate)
    history = worker.run()
    assert [c.shape for c in source.commits] == [(16, 4), (16, 4)]
    assert steps_seen == [0, 2, 4, 5]
    assert [r["step"] for r in history if r["kind"] == "eval"] == [0, 2, 4, 5]


def test_training_raises_the_reward() -> None:
    worker = _worker(_config(None, 30, lr=3e-2, groups=8))
    history = worker.run()
    rewards = [r["reward_mean"] for r in history]
    assert sum(rewards[-5:]) > sum(rewards[:5])


def test_setup_specs_are_checked() -> None:
    from reward_client.merging.trainer import MergeSetup
    from reward_client.training.cli import load_setup

    assert load_setup("trainer_toy:build", TrainSetup).sample_shape == (4,)
    with pytest.raises(ValueError, match="module:function"):
        load_setup("trainer_toy.build", TrainSetup)
    with pytest.raises(TypeError, match="expected TrainSetup"):
        load_setup("trainer_toy:MeanReward", TrainSetup)
    with pytest.raises(TypeError, match="returned TrainSetup, expected MergeSetup"):
        load_setup("trainer_toy:build", MergeSetup)


class ClassRewards:
    """Rewards ``10 g + k`` for sample k of group g, whatever the features."""

    def score(self, features, seed: int, *, step: int | None = None) -> Scores:
        groups, size, _ = features.shape
        rewards = 10.0 * np.arange(groups)[:, None] + np.arange(size)[None, :]
        return Scores(rewards=rewards, advantages=np.zeros_like(rewards))

    def commit(self, features) -> None:
        raise AssertionError("a conditional step with commit_every=0 commits nothing")


def test_conditional_worker_samples_each_group_of_its_class_and_normalises_per_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[torch.Tensor] = []

    def capture(policy, optimizer, trajectory, advantages, *rest):
        seen.append(advantages)
        return UpdateStats(loss=0.0, clip_fraction=0.0, approx_kl=0.0)

    monkeypatch.setattr(worker_module, "policy_update", capture)
    policy = ConditionalAffine(4, classes=2)
    config = _config(None, 1, groups=4, group_size=2, classes=2, commit_every=0)
    TrainerWorker(policy, nn.Identity(), (4,), ClassRewards(), config).run()
    # Groups 0 and 2 are class 0, groups 1 and 3 class 1; the sampler saw every sample's class.
    assert all(torch.equal(c, torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])) for c in policy.calls)
    # By hand: class 0 holds rewards 0, 1, 20, 21 (mean 10.5, variance 100.25), class 1 holds
    # 10, 11, 30, 31 (the same spread); each sample against its class, not its group or batch.
    std = 100.25**0.5 + 1e-8
    expected = torch.tensor([-10.5, -9.5, -10.5, -9.5, 9.5, 10.5, 9.5, 10.5]) / std
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], expected.float())


def test_ranks_number_groups_globally_and_normalise_per_class_over_the_gathered_batch(
    tmp_path: Path,
) -> None:
    # Two ranks as separate processes over gloo, 3 groups of 2 each, 2 classes: rank 0 holds
    # the step's groups 0, 1, 2 (classes 0, 1, 0), rank 1 groups 3, 4, 5 (classes 1, 0, 1), so
    # each class's groups sit on both ranks. Sample k of global group g is rewarded 10 g + k.
    world = 2
    context = torch.multiprocessing.spawn(
        conditional_rank,
        args=(world, str(tmp_path / "rendezvous"), str(tmp_path)),
        nprocs=world,
        join=False,
    )
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the ranks did not finish in 300 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    assert torch.equal(ranks[0]["labels"], torch.tensor([0, 0, 1, 1, 0, 0]))
    assert torch.equal(ranks[1]["labels"], torch.tensor([1, 1, 0, 0, 1, 1]))
    # By hand, over both ranks: class 0 is groups 0, 2, 4 (rewards 0, 1, 20, 21, 40, 41: mean
    # 20.5), class 1 groups 1, 3, 5 (10, 11, 30, 31, 50, 51: mean 30.5), both with variance
    # 1601.5 / 6. Each rank gets its own slice of the advantages of the gathered batch.
    std = (1601.5 / 6) ** 0.5 + 1e-8
    expected = [
        torch.tensor([-20.5, -19.5, -20.5, -19.5, -0.5, 0.5]) / std,
        torch.tensor([-0.5, 0.5, 19.5, 20.5, 19.5, 20.5]) / std,
    ]
    for rank, want in zip(ranks, expected, strict=True):
        assert len(rank["advantages"]) == 2  # one update a step
        for advantages in rank["advantages"]:
            torch.testing.assert_close(advantages, want.float())
        assert rank["steps"] == [0, 1]  # the loop's step, the same on every rank
        assert rank["reward_mean"] == [25.5, 25.5]  # the gathered batch's mean


def test_the_command_line_picks_credits_with_rounds_named_by_the_run_id() -> None:
    from reward_client.grpo.train import parse_args, reward_source, worker_config
    from reward_client.training.sources import CreditRewards, ServiceRewards

    base = ["--setup", "trainer_toy:build", "--reference", "ref"]
    client = object()
    group = reward_source(parse_args(base), client)  # type: ignore[arg-type]
    assert isinstance(group, ServiceRewards) and group.mode == "shared"
    args = parse_args([*base, "--reward", "credits", "--run-id", "job-7", "--groups", "5"])
    credits = reward_source(args, client)  # type: ignore[arg-type]
    assert isinstance(credits, CreditRewards)
    assert (credits.reference, credits.run, credits.commit_fraction) == ("ref", "job-7", 0.25)
    stalled = reward_source(
        parse_args([*base, "--reward", "credits", "--commit-fraction", "0"]), client
    )  # type: ignore[arg-type]
    assert isinstance(stalled, CreditRewards) and stalled.commit_fraction is None
    # The setup's classes reach the worker: groups are then numbered over the ranks.
    config = worker_config(args, classes=10)
    assert (config.groups, config.classes) == (5, 10)
