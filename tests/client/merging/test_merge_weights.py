"""Merging is exact: one-hot weights reproduce a checkpoint bit for bit, uniform is the mean."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from merge_toy import LinearVelocity, checkpoints

from reward_client.merging.merge import Snapshots, merge_into, merged


def _states(count: int = 4) -> list[dict[str, torch.Tensor]]:
    """Random float32 checkpoints with a ``-0.0`` entry and an integer counter."""
    states = []
    for i, state in enumerate(checkpoints(count, seed=1)):
        state["linear.weight"][0, 0] = -0.0
        states.append({**state, "steps": torch.tensor(100 * (i + 1))})
    return states


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of a float32 tensor, so that -0.0 and 0.0 differ."""
    return t.view(torch.int32) if t.is_floating_point() else t


def _saved(states: list[dict[str, torch.Tensor]], directory: Path) -> list[Path]:
    """Each state dict to ``directory/iterNNN.pt``; returns the paths."""
    paths = []
    for i, state in enumerate(states):
        paths.append(directory / f"iter{i:03d}.pt")
        torch.save(state, paths[-1])
    return paths


@pytest.mark.parametrize("on_disk", [False, True])
def test_one_hot_weights_reproduce_each_checkpoint_bit_for_bit(
    on_disk: bool, tmp_path: Path
) -> None:
    states = _states()
    snapshots = Snapshots(_saved(states, tmp_path) if on_disk else states)
    for j, state in enumerate(states):
        out = merged(snapshots, torch.eye(len(states))[j])
        for key, value in state.items():
            assert out[key].dtype == value.dtype
            assert torch.equal(_bits(out[key]), _bits(value)), (j, key)


def test_uniform_weights_equal_the_arithmetic_mean() -> None:
    states = _states()
    out = merged(Snapshots(states), [0.25] * 4)
    for key in ("linear.weight", "linear.bias"):
        mean = torch.stack([s[key] for s in states]).double().mean(dim=0)
        torch.testing.assert_close(out[key].double(), mean, rtol=0, atol=1e-6)
    assert out["steps"].item() == 100  # ties: the first of the largest weights


def test_merge_into_a_module_is_the_weighted_sum_with_negative_weights(tmp_path: Path) -> None:
    states = checkpoints(3)
    model = LinearVelocity()
    weights = [1.5, -0.75, 0.25]
    merge_into(model.state_dict(), Snapshots(_saved(states, tmp_path)), weights)
    expected = sum(w * s["linear.bias"].double() for w, s in zip(weights, states, strict=True))
    torch.testing.assert_close(model.linear.bias.double(), expected, rtol=0, atol=1e-6)
    assert model.linear.bias.requires_grad  # parameters stay parameters


def test_zero_weight_checkpoints_are_never_read(tmp_path: Path) -> None:
    paths = _saved(_states(3), tmp_path)
    snapshots = Snapshots(paths)
    paths[1].unlink()  # would raise if the merge tried to load it
    out = merged(snapshots, [0.5, 0.0, 0.5])
    assert out["linear.bias"].tolist() == [1.0] * 4  # (0 + 2) / 2
    with pytest.raises(FileNotFoundError):
        merged(snapshots, [0.5, 0.25, 0.25])


def test_a_streaming_merge_holds_one_loaded_checkpoint_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside the output buffer, at most one file-backed checkpoint is alive at any moment."""
    alive = [0, 0]  # now, peak
    real_load = torch.load

    class Tracked(dict):  # type: ignore[type-arg]
        def __del__(self) -> None:
            alive[0] -= 1

    def load(*args: object, **kwargs: object) -> Tracked:
        alive[0] += 1
        alive[1] = max(alive)
        return Tracked(real_load(*args, **kwargs))  # type: ignore[arg-type]

    snapshots = Snapshots(_saved(_states(5), tmp_path))
    monkeypatch.setattr(torch, "load", load)
    merged(snapshots, [0.2] * 5)
    assert alive == [0, 1]


def test_invalid_merges_are_refused(tmp_path: Path) -> None:
    states = _states(2)
    snapshots = Snapshots(states)
    with pytest.raises(ValueError, match="2 checkpoints"):
        merged(snapshots, [1.0])
    with pytest.raises(ValueError, match="non-zero"):
        merged(snapshots, [0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        merged(snapshots, [float("nan"), 1.0])
    other = {**states[1], "linear.bias": torch.zeros(5)}
    with pytest.raises(ValueError, match="keys or shapes"):
        merged(Snapshots([states[0], other]), [0.5, 0.5])
    with pytest.raises(ValueError, match="keys"):
        merge_into({"linear.bias": torch.zeros(4)}, snapshots, [0.5, 0.5])
    with pytest.raises(FileNotFoundError):
        Snapshots.from_dir(tmp_path)
    assert Snapshots(_saved(states, tmp_path)).names == ["iter000", "iter001"]
    assert Snapshots.from_dir(tmp_path).names == ["iter000", "iter001"]
