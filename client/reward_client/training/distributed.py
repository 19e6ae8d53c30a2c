"""Process-group helpers for trainer workers; everything falls back to a single process.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`init` starts the default
process group: nccl when CUDA is available, gloo on CPU. :func:`all_gather` is how a step's
per-prompt statistics see every rank's samples, as flow_grpo gathers rewards and prompts before
it normalises them.
"""

from __future__ import annotations

import gc
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["all_gather", "barrier", "init", "is_main", "rank", "shutdown", "world_size", "wrap"]


def init() -> None:
    """Join the process group that ``torchrun`` describes; no-op for a single process."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes checkpoints and logs."""
    return rank() == 0


def wrap(module: nn.Module) -> nn.Module:
    """DDP-wrap ``module`` when several processes train together (gradients all-reduced)."""
    return DistributedDataParallel(module) if world_size() > 1 else module


def all_gather(values: np.ndarray) -> np.ndarray:
    """Every rank's ``values`` (one shape and dtype on every rank) concatenated in rank order
    along the first axis, on every rank; ``values`` itself in a single process."""
    if world_size() == 1:
        return values
    local = torch.tensor(values)  # a copy: the array may be read-only
    if dist.get_backend() == "nccl":  # nccl gathers device tensors only
        local = local.to(torch.device("cuda", torch.cuda.current_device()))
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local)
    gathered: np.ndarray = torch.cat(parts).cpu().numpy()
    return gathered


def barrier() -> None:
    """Wait until every rank got here; no-op for a single process."""
    if world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group if one was started, and free what is left of it while the
    interpreter is still whole: a gloo group that a DDP module kept alive until interpreter
    finalization can abort the process there. Release the DDP modules first."""
    if dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()
