"""The merge trainer on a synthetic reward (no service): it learns, resumes and logs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from merge_toy import DIM, LinearVelocity, MeanTargetReward, checkpoints
from torch import nn

from reward_client.merging.merge import Snapshots
from reward_client.merging.policy import PolicyConfig
from reward_client.merging.trainer import MergeConfig, MergeTrainer


def _trainer(steps: int, source: MeanTargetReward, **policy: object) -> MergeTrainer:
    config = MergeConfig(
        steps=steps, candidates=6, group_size=16, ode_steps=4, eval_every=0, progress=False,
        policy=PolicyConfig(**{"kind": "affine", "lr": 0.05, **policy}),  # type: ignore[arg-type]
    )  # fmt: skip
    return MergeTrainer(
        LinearVelocity(), Snapshots(checkpoints(3)), nn.Identity(), (DIM,), source, config
    )


def test_the_trainer_shifts_weight_to_the_checkpoint_the_reward_prefers() -> None:
    """The checkpoints differ in their bias (0, 1, 2); a target mean far above every sample
    mean rewards the largest bias, so the last checkpoint's weight grows (past 1: affine)."""
    source = MeanTargetReward(target=20.0)
    trainer = _trainer(30, source)
    history = trainer.run()
    weights = trainer.policy.mean_weights()
    assert weights[2] > 1.0 and weights.argmax() == 2
    assert source.commits == 30
    assert history[-1]["reward_mean"] > history[0]["reward_mean"]


def test_resume_from_state_dict_repeats_the_uninterrupted_run() -> None:
    full = _trainer(6, MeanTargetReward(5.0))
    full.run()
    first = _trainer(3, MeanTargetReward(5.0))
    first.run()
    resumed = _trainer(6, MeanTargetReward(5.0))
    resumed.load_state_dict(first.state_dict())
    resumed.run()
    torch.testing.assert_close(resumed.policy.mean_weights(), full.policy.mean_weights())
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full.history]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history] == strip


def test_evaluation_sees_the_mean_merge_at_start_cadence_and_end() -> None:
    seen: list[torch.Tensor] = []

    def evaluate(model: nn.Module) -> dict[str, float]:
        bias = model.linear.bias.detach().clone()  # type: ignore[union-attr]
        seen.append(bias)
        return {"score": float(bias.mean())}

    trainer = _trainer(5, MeanTargetReward(5.0))
    trainer.evaluate = evaluate
    trainer.config = dataclasses.replace(trainer.config, eval_every=2)
    trainer.run()
    evals = [r for r in trainer.history if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2, 4, 5]
    # The evaluated model is the merge of the recorded weights: bias = sum_i w_i * i.
    for record, bias in zip(evals, seen, strict=True):
        expected = sum(w * i for i, w in enumerate(record["weights"]))
        torch.testing.assert_close(bias, torch.full((DIM,), expected, dtype=torch.float32))


def test_the_log_checkpoint_and_weights_are_written_as_it_goes_and_resumed(tmp_path: Path) -> None:
    """The run loop the GRPO worker uses: metrics.jsonl grows a line a step, checkpoint.pt and
    weights.json follow every step, and a rerun with more steps resumes where it stopped."""
    straight = _trainer(4, MeanTargetReward(5.0))
    straight.run()

    first = _trainer(2, MeanTargetReward(5.0))
    first.config = dataclasses.replace(first.config, out_dir=tmp_path)
    first.run()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    assert json.loads((tmp_path / "weights.json").read_text())["step"] == 2

    resumed = _trainer(4, MeanTargetReward(5.0))
    resumed.config = dataclasses.replace(resumed.config, out_dir=tmp_path)
    resumed.run()
    torch.testing.assert_close(resumed.policy.mean_weights(), straight.policy.mean_weights())
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    weights = json.loads((tmp_path / "weights.json").read_text())
    assert weights == {"step": 4, "weights": straight.policy.mean_weights().tolist()}
