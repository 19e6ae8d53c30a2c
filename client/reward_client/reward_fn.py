"""Distribution-wise rewards as a drop-in reward function for DDPO / Flow-GRPO style trainers.

Those trainers call ``reward_fn(images, prompts, metadata)`` and expect ``(rewards, info)``
with one reward per sample, in the order the samples came in. A distribution-wise reward is
a property of a *group* of samples, so the function cuts the batch of B = G * K samples into
G consecutive groups of K (sample ``i`` is in group ``i // K``), asks the service for the G
group rewards, and gives every sample its group's reward. Switching an existing trainer over
is then one line::

    reward_fn = distribution_reward_fn(client, "inception", group_size=16, feature_fn=encoder)

Arrange each batch so that consecutive runs of K samples form the groups to compare (e.g.
K samples of one prompt). Prompts and metadata are accepted for the calling convention and
not used: the reward compares features with the reference distribution, not with prompts.

Newer Flow-GRPO trainers combine several scorers (``multi_score``) and call
``reward_fn(images, prompts, metadata, only_strict=...)``, expecting a dict of per-sample
scores with an ``"avg"`` entry; `as_multi_score` adapts a reward function to that form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ._client import RewardClient
from ._encoding import ArrayLike, as_numpy
from ._types import Method, Mode

__all__ = ["MultiScoreFn", "RewardFn", "as_multi_score", "distribution_reward_fn"]

#: ``fn(samples, prompts, metadata) -> (per-sample rewards, info)``.
RewardFn = Callable[[ArrayLike, Any, Any], tuple[npt.NDArray[np.float64], dict[str, Any]]]
#: ``fn(samples, prompts, metadata, **options) -> ({name: rewards, "avg": rewards}, info)``.
MultiScoreFn = Callable[..., tuple[dict[str, npt.NDArray[np.float64]], dict[str, Any]]]


def distribution_reward_fn(
    client: RewardClient,
    reference: str,
    group_size: int,
    feature_fn: Callable[[ArrayLike], ArrayLike] | None = None,
    *,
    mode: Mode | None = None,
    method: Method | None = None,
    seed: int | None = None,
    version: int | None = None,
) -> RewardFn:
    """A reward function in the DDPO / Flow-GRPO calling convention.

    Args:
        client: The (blocking) client; trainers call reward functions synchronously.
        reference: Name of the reference on the service.
        group_size: K, the samples per group; the batch size must be a multiple of it.
        feature_fn: Maps a batch of samples (e.g. images) to features (B, d); without it the
            samples must already be features.
        mode, method, seed, version: Passed to `RewardClient.rewards` on every call.

    The returned function gives per-sample rewards (B,) in input order, and an info dict with
    the service's ``version``, ``base_fd``, ``stale`` and ``seed``, the per-group
    ``group_rewards``, ``fds`` and ``advantages`` (G,), and the per-sample ``advantages``
    spread the same way as the rewards (``sample_advantages``, (B,)).
    """
    if group_size < 1:
        raise ValueError("group_size must be >= 1")

    def reward_fn(
        samples: ArrayLike, prompts: Any = None, metadata: Any = None
    ) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
        del prompts, metadata  # part of the convention; the reward does not depend on them
        features = as_numpy(
            feature_fn(samples) if feature_fn is not None else samples, ndim=2, name="features"
        )
        batch_size, dim = features.shape
        if batch_size == 0 or batch_size % group_size:
            raise ValueError(
                f"batch of {batch_size} samples is not a positive multiple of "
                f"group_size={group_size}"
            )
        groups = features.reshape(batch_size // group_size, group_size, dim)  # input order
        result = client.rewards(
            reference, groups, mode=mode, method=method, seed=seed, version=version
        )
        info = {
            "version": result.version,
            "base_fd": result.base_fd,
            "stale": result.stale,
            "seed": result.seed,
            "group_rewards": result.rewards,
            "fds": result.fds,
            "advantages": result.advantages,
            "sample_advantages": np.repeat(result.advantages, group_size),
        }
        return np.repeat(result.rewards, group_size), info

    return reward_fn


def as_multi_score(reward_fn: RewardFn, name: str = "distribution") -> MultiScoreFn:
    """``reward_fn`` in Flow-GRPO's ``multi_score`` form: per-sample scores under ``name``
    and ``"avg"`` (the training signal when it is the only scorer); keyword options such as
    ``only_strict`` are accepted and do not apply."""

    def score_fn(
        samples: ArrayLike, prompts: Any = None, metadata: Any = None, **options: Any
    ) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, Any]]:
        del options  # scorer-specific switches of other rewards (e.g. GenEval's only_strict)
        rewards, info = reward_fn(samples, prompts, metadata)
        return {name: rewards, "avg": rewards}, info

    return score_fn
