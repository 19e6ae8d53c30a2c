"""One flow_grpo rank as a process of its own, and the world it samples from (for
``test_client_ranks.py``, which imports the world and starts the ranks).

Run as ``python flow_grpo_rank.py WORKDIR REFERENCE EPOCHS SETUP`` with ``RANK``,
``WORLD_SIZE``, ``DISTREWARD_URL`` and ``DISTREWARD_TOKEN`` set, as a launcher sets them. The
rank does what flow_grpo's ``scripts/train_sd3.py`` does around its reward function, with a
fixed policy in place of the diffusion model:

- every sampling batch draws its prompts from ``DistributedKRepeatSampler``: the batch's
  ``WORLD * BATCH / K`` prompts, each repeated K times, shuffled with a generator that every
  rank seeds alike, and cut into one share of ``BATCH`` per rank, so that each prompt's K
  images are spread over the ranks;
- the rank builds its own ``credit_reward_fn`` (``SETUP``, one of `SETUPS`: ``defaults`` is
  what a trainer that passes nothing gets) and submits it to a thread pool once per sampling
  batch; the results are collected after the epoch's sampling. Sampling a batch of images
  takes far longer than a reward call, and the ranks, which leave the training phase's
  collectives together, sample at the same speed: so a rank submits batch ``i`` once its batch
  ``i - 1`` is rewarded, together with the other ranks (a barrier stands in for the sampling
  time), and the ranks' calls of one batch run concurrently;
- the rewards become float32 tensors (``torch.as_tensor(value).float()``), are gathered in rank
  order (each rank writes its share to ``WORKDIR`` and waits for the others': the barrier that
  ``accelerator.gather`` is) and normalised per prompt as ``PerPromptStatTracker`` does; the
  rank keeps its own slice of the advantages.

At the end the rank writes ``rank{RANK}.npz``: per sampling batch its features, prompts,
float64 rewards and what the service answered (the pool version the credits were computed
against, its base FD, which samples the low-rank path served, the seed, and the commit the call
made), and its slice of the advantages.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from reward_client import CreditBatch, RewardClient, credit_reward_fn

D = 64  # feature (and latent) dimension: update ranks up to D / 4 = 16 take the low-rank path
K = 16  # images per prompt (flow_grpo's num_image_per_prompt)
BATCH = 8  # images per rank and sampling batch (train_batch_size)
BATCHES_PER_EPOCH = 2  # flow_grpo wants an even number
PROMPTS = 512  # the prompt dataset
SPREAD = 0.05  # a prompt's images around its centre, in latent standard deviations
SAMPLER_SEED = 42  # as train_sd3.py seeds DistributedKRepeatSampler
BARRIER_SECONDS = 120.0  # a rank that waits longer for the others gives up

_LATENT_STD = 1.0 / (1.0 + np.arange(D) / 8.0)  # a decaying spectrum, as image features have
_MIXING = np.random.default_rng(0).normal(size=(D, D)) / np.sqrt(D)

#: The reward functions a rank may build: keyword arguments of `credit_reward_fn` by rank.
SETUPS: dict[str, Callable[[int], dict[str, Any]]] = {
    "defaults": lambda rank: {},
    # nothing committed: every call of every rank meets one pool version
    "frozen": lambda rank: {"commit_fraction": None},
    # the old default: the replace-one form, one row per process drawn from its own seed
    "replace-own-rows": lambda rank: {"form": "replace", "seed": 1000 + rank},
}


def encoder(images: np.ndarray) -> np.ndarray:
    """The feature extractor: latent "images" (B, D) to non-negative, correlated float32
    features (softplus of a fixed mixing), as a network's pooled activations are."""
    return np.logaddexp(0.0, np.asarray(images, dtype=np.float64) @ _MIXING).astype(np.float32)


def real_images(count: int, rng: np.random.Generator) -> np.ndarray:
    """Latents of the real data the target is fitted to: shifted from the policy's."""
    shift = 0.5 * _LATENT_STD * np.where(np.arange(D) % 2, 1.0, -1.0)
    return shift + _LATENT_STD * rng.normal(size=(count, D))


def policy_images(count: int, rng: np.random.Generator) -> np.ndarray:
    """Latents of the policy's images (the pool and the prompts' centres), wider than real."""
    return 1.2 * _LATENT_STD * rng.normal(size=(count, D))


PROMPT_CENTRES = policy_images(PROMPTS, np.random.default_rng(1))


def sampler_share(step: int, rank: int, world: int) -> np.ndarray:
    """The prompts (dataset indices) of ``rank``'s share of sampling batch ``step``:
    ``DistributedKRepeatSampler.__iter__`` after ``set_epoch(step)``, with numpy's generator
    in place of torch's (every rank draws the same permutations)."""
    total = world * BATCH
    assert total % K == 0, f"K={K} must divide WORLD * BATCH = {total}"
    rng = np.random.default_rng(SAMPLER_SEED + step)
    unique = rng.permutation(PROMPTS)[: total // K]
    repeated = np.repeat(unique, K)
    shuffled = repeated[rng.permutation(total)]
    return shuffled[rank * BATCH : (rank + 1) * BATCH]


def sample_images(prompt_ids: np.ndarray, rank: int, step: int) -> np.ndarray:
    """The policy's images of ``prompt_ids``: each close to its prompt's centre, so that one
    prompt's images are of similar quality and small differences decide their order."""
    rng = np.random.default_rng([7, rank, step])
    noise = SPREAD * _LATENT_STD * rng.normal(size=(len(prompt_ids), D))
    return PROMPT_CENTRES[prompt_ids] + noise


def per_prompt_advantages(prompts: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """flow_grpo's ``PerPromptStatTracker.update`` (grpo, per-prompt std): each reward against
    the mean and std of its prompt's rewards, in float64."""
    rewards = np.asarray(rewards, dtype=np.float64)
    members: dict[Any, list[int]] = defaultdict(list)
    for i, prompt in enumerate(prompts.tolist()):
        members[prompt].append(i)
    advantages = np.zeros_like(rewards)
    for rows in members.values():
        values = rewards[rows]
        advantages[rows] = (values - values.mean()) / (values.std() + 1e-4)
    return advantages


class RecordingClient(RewardClient):
    """The rank's client; it keeps each thread's last credits answer, so that the rank can
    report the commit each reward call made (the reward function's ``info`` says only how many
    rows)."""

    def __init__(self) -> None:
        super().__init__()  # DISTREWARD_URL and DISTREWARD_TOKEN from the environment
        self._last = threading.local()

    def credits(self, *args: Any, **kwargs: Any) -> CreditBatch:  # type: ignore[override]
        batch: CreditBatch = super().credits(*args, **kwargs)
        self._last.batch = batch
        return batch

    def last_answer(self) -> CreditBatch:
        return self._last.batch  # type: ignore[no-any-return]


def _gather(
    workdir: Path, tag: str, rank: int, world: int, share: dict[str, Any]
) -> dict[str, np.ndarray]:
    """All ranks' ``share`` of what ``tag`` names, in rank order, once every rank has written
    its own: a barrier, and ``accelerator.gather``."""
    path = workdir / f"{tag}-rank{rank}.npz"
    np.savez(path.with_suffix(".tmp.npz"), **share)
    os.replace(path.with_suffix(".tmp.npz"), path)  # the others never read a partial file
    deadline = time.monotonic() + BARRIER_SECONDS
    paths = [workdir / f"{tag}-rank{r}.npz" for r in range(world)]
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise SystemExit(f"rank {rank}: the other ranks' {tag} never arrived")
        time.sleep(0.01)
    gathered: dict[str, list[np.ndarray]] = defaultdict(list)
    for p in paths:
        with np.load(p) as other:
            for key in share:
                gathered[key].append(other[key])
    return {key: np.concatenate(parts) for key, parts in gathered.items()}


def main(workdir: Path, reference: str, epochs: int, setup: str) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    client = RecordingClient()
    reward_fn = credit_reward_fn(client, reference, feature_fn=encoder, **SETUPS[setup](rank))

    def rewarded(images: np.ndarray, prompts: list[str], metadata: list[dict]) -> tuple:
        scores, info = reward_fn(images, prompts, metadata, only_strict=True)
        return scores, info, client.last_answer()

    record: dict[str, list[Any]] = defaultdict(list)
    executor = ThreadPoolExecutor(max_workers=8)  # as train_sd3.py
    for epoch in range(epochs):
        submitted: list[tuple[int, np.ndarray, Future[tuple]]] = []
        for i in range(BATCHES_PER_EPOCH):
            step = epoch * BATCHES_PER_EPOCH + i
            if submitted:  # sampling batch i outlasts the reward call of batch i - 1
                submitted[-1][2].result()
                _gather(workdir, f"sampled{step}", rank, world, {})
            prompt_ids = sampler_share(step, rank, world)
            images = sample_images(prompt_ids, rank, step)
            prompts = [f"prompt {p}" for p in prompt_ids]
            future = executor.submit(rewarded, images, prompts, [{}] * BATCH)
            submitted.append((step, prompt_ids, future))
            time.sleep(0)  # "yield to make sure reward computation starts"
        rewards32 = []
        for step, prompt_ids, future in submitted:
            scores, info, answer = future.result()
            committed = answer.committed
            record["prompt"].append(prompt_ids)
            record["features"].append(encoder(sample_images(prompt_ids, rank, step)))
            record["reward"].append(scores["avg"])
            record["version"].append(info["version"])
            record["base_fd"].append(info["base_fd"])
            record["lowrank"].append([m == "lowrank" for m in answer.methods_used])
            record["seed"].append(-1 if info["seed"] is None else info["seed"])
            record["committed_rows"].append(info["committed"])
            record["committed_key"].append("" if committed is None else committed.idempotency_key)
            record["committed_version"].append(-1 if committed is None else committed.version)
            record["committed_base_fd"].append(np.nan if committed is None else committed.base_fd)
            rewards32.append(np.asarray(scores["avg"]).astype(np.float32))  # .float()
        share = {"prompt": np.concatenate([p for _, p, _ in submitted]),
                 "reward": np.concatenate(rewards32)}  # fmt: skip
        gathered = _gather(workdir, f"epoch{epoch}", rank, world, share)
        advantages = per_prompt_advantages(gathered["prompt"], gathered["reward"])
        record["advantages"].append(advantages.reshape(world, -1)[rank])  # ungathered
    executor.shutdown()
    client.close()
    arrays: dict[str, Any] = {key: np.stack(v) for key, v in record.items()}
    np.savez(workdir / f"rank{rank}.npz", **arrays)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4])
