"""Distribution-wise rewards as a drop-in reward function for DDPO / Flow-GRPO style trainers.

Those trainers call ``reward_fn(images, prompts, metadata)`` from a thread pool, one call per
sampling batch (any size: 1, 9, 16, a partial last batch), expect one reward per sample in
input order, and normalise the rewards *per prompt*. `credit_reward_fn` is the drop-in for
them: each sample gets its own distribution-wise credit (the FD change when it is added to the
pool, which involves no pool row: under DDP, where one prompt's samples are spread over ranks
that call the service on their own, every rank gets the same credit for the same sample at the
same pool version), and a share of the samples is committed in the same request so that the
pool keeps following the policy. Flow-GRPO (``scripts/train_sd3.py``)::

    reward_fn = credit_reward_fn(client, "inception", feature_fn=encoder)  # flow_grpo form
    # called as reward_fn(images, prompts, prompt_metadata, only_strict=True)
    # -> ({"avg": rewards, "distribution": rewards}, info)

DDPO (``scripts/train.py``): ``credit_reward_fn(..., output="ddpo")`` returns
``(rewards, info)``. Under DDP every rank commits its own share with keys made of a run id,
the rank (``RANK``, as torchrun sets it) and a call counter: each commit applies once. The
ranks' calls of one step form a *round* (the run id, which torchrun gives every rank as
``TORCHELASTIC_RUN_ID``, and the call counter, which moves in step on every rank): the service
answers every call of a round at the pool version its first call found, so a prompt's samples
are scored against one pool whichever rank holds them, while each rank's commit goes in.

`distribution_reward_fn` is the older group form. A distribution-wise reward is
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

import hashlib
import itertools
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._config import FeatureSpaceLike, feature_space_id
from ._encoding import ArrayLike, as_numpy
from ._sync_client import RewardClient
from ._types import CreditForm, Method, Mode

__all__ = [
    "COMMIT_FRACTION",
    "MultiScoreFn",
    "RewardFn",
    "as_multi_score",
    "credit_reward_fn",
    "distribution_reward_fn",
]

COMMIT_FRACTION = 0.25
"""Share of the rewarded samples committed to the pool, by default. Measured on the digits
demo with per-sample rewards (256 samples a step, pool 2,000, 200 steps; DESIGN section 8): 1
row a step -> FID 841, 32 -> 54.6, 64 (this share) -> 23.0 and 22.2 (seeds 0, 1), 128 -> 28.0
and 24.3. Below about 1/8 the pool falls behind the policy and the reward is hacked."""

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
    feature_space: FeatureSpaceLike | None = None,
) -> RewardFn:
    """A reward function in the DDPO / Flow-GRPO calling convention.

    Args:
        client: The (blocking) client; trainers call reward functions synchronously.
        reference: Name of the reference on the service.
        group_size: K, the samples per group; the batch size must be a multiple of it.
        feature_fn: Maps a batch of samples (e.g. images) to features (B, d); without it the
            samples must already be features.
        mode, method, seed, version: Passed to `RewardClient.rewards` on every call.
        feature_space: The features' space, sent with every call; by default ``feature_fn``'s
            when it is an extractor of `reward_client.features`, else the client's config's.

    The returned function gives per-sample rewards (B,) in input order, and an info dict with
    the service's ``version``, ``base_fd``, ``stale`` and ``seed``, the per-group
    ``group_rewards``, ``fds`` and ``advantages`` (G,), and the per-sample ``advantages``
    spread the same way as the rewards (``sample_advantages``, (B,)).
    """
    if group_size < 1:
        raise ValueError("group_size must be >= 1")
    space = _feature_space(feature_fn, feature_space)

    def reward_fn(
        samples: ArrayLike, prompts: Any = None, metadata: Any = None
    ) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
        del prompts, metadata  # part of the convention; the reward does not depend on them
        features = _features(feature_fn, samples)
        batch_size, dim = features.shape
        if batch_size == 0 or batch_size % group_size:
            raise ValueError(
                f"batch of {batch_size} samples is not a positive multiple of "
                f"group_size={group_size}"
            )
        groups = features.reshape(batch_size // group_size, group_size, dim)  # input order
        result = client.rewards(
            reference,
            groups,
            mode=mode,
            method=method,
            seed=seed,
            version=version,
            feature_space=space,
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


def _features(
    feature_fn: Callable[[ArrayLike], ArrayLike] | None, samples: ArrayLike
) -> npt.NDArray[Any]:
    """The features (B, d) of ``samples``: ``feature_fn``'s, else the samples themselves."""
    return as_numpy(
        feature_fn(samples) if feature_fn is not None else samples, ndim=2, name="features"
    )


def _round_safe(run: str) -> str:
    """``run`` in the characters a round may hold (letters, digits, ``._:-``), short enough to
    leave room for the call number; a digest where it is not already so."""
    if len(run) <= 96 and all(c.isascii() and (c.isalnum() or c in "._:-") for c in run):
        return run
    return hashlib.sha256(run.encode()).hexdigest()[:32]


def _feature_space(
    feature_fn: Callable[[ArrayLike], ArrayLike] | None, declared: FeatureSpaceLike | None
) -> str | None:
    """``declared``, else the space of an extractor ``feature_fn`` (its ``feature_space``);
    the two must agree. None leaves the client's config to decide."""
    own = feature_space_id(getattr(feature_fn, "feature_space", None))
    named = feature_space_id(declared)
    if own is not None and named is not None and own != named:
        raise ValueError(f"feature_fn makes features of {own!r}, not {named!r}")
    return named or own


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


def credit_reward_fn(
    client: RewardClient,
    reference: str,
    feature_fn: Callable[[ArrayLike], ArrayLike] | None = None,
    *,
    output: Literal["flow_grpo", "ddpo"] = "flow_grpo",
    name: str = "distribution",
    commit_fraction: float | None = COMMIT_FRACTION,
    form: CreditForm = "add",
    seed: int | None = None,
    method: Method | None = None,
    run_id: str | None = None,
    rank: int | None = None,
    feature_space: FeatureSpaceLike | None = None,
) -> MultiScoreFn:
    """Per-sample distribution-wise rewards in the DDPO / Flow-GRPO calling convention.

    Args:
        client: The (blocking) client; safe to share between the trainer's threads.
        reference: Name of the reference on the service.
        feature_fn: Maps a batch of samples (e.g. images) to features (B, d); without it the
            samples must already be features. Called in the trainer's thread.
        output: ``flow_grpo``: ``({"avg": rewards, name: rewards}, info)``; ``ddpo``:
            ``(rewards, info)``.
        commit_fraction: Share of each call's samples committed to the pool in the same
            request (None: never; the pool then stalls, see the README).
        form: ``add`` (the FD change of adding each sample to the pool: no pool row, one
            credit per sample and pool version on every rank) or ``replace`` (of replacing one
            pool row by each sample, subset-replace with groups of one; ranks that draw
            different rows give one sample different credits, so share ``seed`` across ranks).
        seed: ``replace``: draws the pool row every sample replaces, one per run (drawn here
            when None), so samples of one prompt rewarded in different calls meet the same
            row. ``add``: seeds the draw of the committed share (from the key when None).
        run_id, rank: Make the idempotency keys ``{run_id}-r{rank}-{call}`` and the rounds
            ``{run_id}/{call}``; ``run_id`` is ``TORCHELASTIC_RUN_ID`` (the same on every rank
            under torchrun) or else a fresh uuid (pass one that every rank shares when the
            ranks are not started by torchrun), ``rank`` the ``RANK`` environment variable (0
            without).
        feature_space: The features' space, sent with every call; by default ``feature_fn``'s
            when it is an extractor of `reward_client.features`, else the client's config's.

    Prompts, metadata and keyword options (``only_strict``, ...) are accepted and unused: the
    reward compares features with the reference distribution. ``info`` holds the service's
    ``version``, ``base_fd``, ``form``, ``row``, ``seed``, ``freshness`` (share) and ``committed``
    (rows, 0 when none) for the call.
    """
    if output not in ("flow_grpo", "ddpo"):
        raise ValueError(f"output must be 'flow_grpo' or 'ddpo', got {output!r}")
    if commit_fraction is not None and not 0.0 < commit_fraction <= 1.0:
        raise ValueError("commit_fraction must lie in (0, 1], or be None")
    space = _feature_space(feature_fn, feature_space)
    run = run_id or os.environ.get("TORCHELASTIC_RUN_ID") or uuid.uuid4().hex[:16]
    round_prefix = _round_safe(run)
    worker = int(os.environ.get("RANK", "0")) if rank is None else rank
    if seed is None and form == "replace":
        seed = int.from_bytes(os.urandom(7), "little")
    calls = itertools.count()
    counting = threading.Lock()  # itertools.count is not documented as thread-safe

    def reward_fn(
        samples: ArrayLike, prompts: Any = None, metadata: Any = None, **options: Any
    ) -> Any:
        del prompts, metadata, options  # the convention's; the reward does not use them
        features = _features(feature_fn, samples)
        with counting:
            call = next(calls)
        key = None if commit_fraction is None else f"{run}-r{worker}-{call}"
        batch = client.credits(
            reference,
            features,
            form=form,
            round=f"{round_prefix}/{call}" if form == "add" else None,
            seed=seed,
            method=method,
            commit_fraction=commit_fraction,
            idempotency_key=key,
            feature_space=space,
        )
        info = {
            "version": batch.version,
            "base_fd": batch.base_fd,
            "stale": batch.stale,
            "form": batch.form,
            "row": batch.row,
            "seed": batch.seed,
            "freshness": batch.freshness.share,
            "committed": 0 if batch.committed is None else batch.committed.rows,
        }
        rewards = np.array(batch.rewards)
        if output == "ddpo":
            return rewards, info
        return {name: rewards, "avg": rewards}, info

    return reward_fn
