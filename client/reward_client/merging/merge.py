"""Post-hoc merging of checkpoints: ``theta(w) = sum_i w_i theta_i``, streamed.

Model-agnostic: a checkpoint is any state dict (name -> tensor) and all checkpoints of a
:class:`Snapshots` set have the same keys and shapes. Checkpoints may live in memory or on disk
(``torch.save`` files, loaded one at a time), so a merge holds at most two full models beyond
the snapshots' own storage: the output buffer it accumulates into, and the one file it has
loaded. The accumulation runs in place, in the output's dtype::

    out  = w_j theta_j             (j: the first checkpoint with w_j != 0)
    out += w_i theta_i             (every later i with w_i != 0)

Zero weights are skipped (their files are not even read), so one-hot weights reproduce that
checkpoint bit for bit (``1 * x`` is exact, ``-0.0`` included). Entries that are not floating
point (step counters, integer buffers) cannot be averaged: they are copied from the checkpoint
with the largest weight.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path

import torch

__all__ = ["Checkpoint", "Snapshots", "StateDict", "Weights", "merge_into", "merged"]

StateDict = Mapping[str, torch.Tensor]
"""A model's tensors by name, as ``nn.Module.state_dict()`` returns them."""

Checkpoint = StateDict | str | os.PathLike[str]
"""A state dict in memory, or the path of a ``torch.save``-d one."""

Weights = Iterable[float] | torch.Tensor
"""One merge weight per checkpoint: a sequence, a numpy array or a 1-d tensor."""


class Snapshots(Sequence[StateDict]):
    """An ordered set of checkpoints with the same keys and shapes (oldest first).

    Indexing loads a checkpoint from disk when it was given as a path (``weights_only``, on the
    CPU); in-memory state dicts are returned as they are. Keys and shapes are checked against
    the first checkpoint at every load.
    """

    def __init__(self, items: Sequence[Checkpoint]) -> None:
        if len(items) == 0:
            raise ValueError("a merge needs at least one checkpoint")
        self._items = list(items)
        self._shapes = {k: tuple(v.shape) for k, v in self._load(0).items()}

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str], pattern: str = "*.pt") -> Snapshots:
        """The files of ``directory`` matching ``pattern``, in sorted (name) order."""
        paths = sorted(Path(directory).glob(pattern))
        if not paths:
            raise FileNotFoundError(f"no checkpoint matches {Path(directory) / pattern}")
        return cls(paths)

    @property
    def names(self) -> list[str]:
        """A short label per checkpoint: the file stem, or ``#i`` for one held in memory."""
        return [
            f"#{i}" if isinstance(item, Mapping) else Path(item).stem
            for i, item in enumerate(self._items)
        ]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> StateDict:  # type: ignore[override]
        state = self._load(index)
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        if shapes != self._shapes:
            raise ValueError(
                f"checkpoint {self.names[index]} differs from the first in keys or shapes"
            )
        return state

    def __iter__(self) -> Iterator[StateDict]:
        return (self[i] for i in range(len(self)))

    def _load(self, index: int) -> StateDict:
        item = self._items[index]
        if isinstance(item, Mapping):
            return item
        state = torch.load(item, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise TypeError(f"{item} holds a {type(state).__name__}, not a state dict")
        return state


def _check_weights(weights: Weights, count: int) -> list[float]:
    values = [float(w) for w in weights]
    if len(values) != count:
        raise ValueError(f"{len(values)} weights for {count} checkpoints")
    if not all(map(math.isfinite, values)):
        raise ValueError(f"merge weights must be finite, got {values}")
    if not any(values):
        raise ValueError("at least one merge weight must be non-zero")
    return values


@torch.no_grad()
def merge_into(
    out: MutableMapping[str, torch.Tensor],
    snapshots: Snapshots,
    weights: Weights,
) -> None:
    """Overwrite the tensors of ``out`` in place with ``sum_i weights[i] snapshots[i]``.

    ``out`` is typically ``model.state_dict()`` (its tensors share the parameters' storage), so
    the model itself is the output buffer. Its keys must be those of the snapshots.
    """
    values = _check_weights(weights, len(snapshots))
    largest = max(range(len(values)), key=lambda i: abs(values[i]))
    started = False
    for i, w in enumerate(values):
        if w == 0.0:
            continue  # skipped, not added as 0 * theta_i: keeps one-hot merges bit-exact
        state = snapshots[i]
        if set(state) != set(out):
            raise ValueError("the output's keys differ from the checkpoints' keys")
        for key, target in out.items():
            source = state[key].to(device=target.device)
            if not target.is_floating_point():
                if i == largest:
                    target.copy_(source)
            elif started:
                target.add_(source.to(target.dtype), alpha=w)
            else:
                target.copy_(source).mul_(w)
        started = True
        del state  # a file-backed checkpoint is released before the next one loads


def merged(snapshots: Snapshots, weights: Weights) -> dict[str, torch.Tensor]:
    """A new state dict ``sum_i weights[i] snapshots[i]`` (dtypes and devices of the first)."""
    out = {k: torch.empty_like(v) for k, v in snapshots[0].items()}
    merge_into(out, snapshots, weights)
    return out
