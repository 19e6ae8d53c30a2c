"""The resumable state every trainer here keeps: policy, optimizer, step counter, history.

Both the GRPO worker and the merge trainer checkpoint exactly this, so it is written once.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["restore_training_state", "training_state"]


def training_state(
    policy: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """A ``state_dict``-style snapshot (the history is copied)."""
    return {
        "step": step,
        "policy": policy.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": list(history),
    }


def restore_training_state(
    state: dict[str, Any], policy: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, list[dict[str, Any]]]:
    """Load policy and optimizer from :func:`training_state` output; return step and history."""
    policy.load_state_dict(state["policy"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), list(state["history"])
