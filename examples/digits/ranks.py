"""The ``credits_4ranks`` run: the credits run as :data:`~.config.RANKS` ``torchrun`` ranks.

The ranks are separate processes of ``python -m reward_client.grpo.train`` with the demo's setup
(:mod:`.trainer_setup`), as a user would start them: DDP over gloo, each rank sampling and
scoring its share of the step's groups (5 of the 20, numbered over all ranks, so each class's two
groups sit on two ranks), every rank asking the service for per-sample credits in the step's
round and committing a quarter of its own samples, the per-class normalisation over the ranks'
gathered rewards. The CLI evaluates nothing: the run is launched once per evaluation period, each
launch resuming from the previous one's checkpoint (as rerunning the command does), and the
demo evaluates the checkpoint in between.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reward_client import COMMIT_FRACTION
from reward_client.training.loop import CHECKPOINT, METRICS, Record

from .base import load_base
from .config import RANKS, DemoConfig
from .features import cnn_feature_space
from .runs import SAMPLES, evaluator_for, reference_of, run_dir, upload_reference
from .service import Endpoint
from .trainer_setup import BASE_VARIABLE, base_settings

__all__ = ["EVALUATIONS", "LOG", "run_ranks", "torchrun_command"]

LOG = "ranks.log"
"""The ranks' output (both streams, every launch), in the run's directory."""

EVALUATIONS = "evaluations.jsonl"
"""The demo's evaluations of the run's checkpoints, in the run's directory."""

ROOT = Path(__file__).resolve().parents[2]
"""The repository root, where ``examples`` is importable from."""


def torchrun_command(
    config: DemoConfig, url: str, reference: str, seed: int, steps: int, out: Path
) -> list[str]:
    """The ``torchrun`` command of :data:`RANKS` ranks that trains until ``steps`` (resuming
    from ``out``), with the worker settings of ``config`` split over the ranks."""
    worker = config.worker
    if worker.groups % RANKS:
        raise ValueError(f"{worker.groups} groups do not split over {RANKS} ranks")
    setup = "build_conditional" if config.classes else "build"
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(RANKS),
        "-m", "reward_client.grpo.train",
        "--setup", f"examples.digits.trainer_setup:{setup}",
        "--url", url, "--reference", reference,
        "--reward", "credits", "--commit-fraction", str(COMMIT_FRACTION), "--run-id", reference,
        "--steps", str(steps), "--seed", str(seed), "--out", str(out),
        "--groups", str(worker.groups // RANKS), "--group-size", str(worker.group_size),
        "--lr", str(worker.lr), "--commit-every", "0",
        "--checkpoint-every", str(worker.checkpoint_every),
        "--sde-steps", str(worker.sde.steps), "--noise", str(worker.sde.noise),
        "--clip", str(worker.grpo.clip), "--minibatches", str(worker.grpo.minibatches),
        "--threads", "1", "--no-progress",
    ]  # fmt: skip


def _stops(config: DemoConfig) -> list[int]:
    """The steps each launch trains until: every evaluation period, and the last step."""
    every, steps = config.worker.eval_every, config.worker.steps
    stops = list(range(every, steps, every)) if every > 0 else []
    return [*stops, steps]


def _launch(command: list[str], token: str, config: DemoConfig, log: Path) -> None:
    env = {
        **os.environ,
        "DISTREWARD_TOKEN": token,
        BASE_VARIABLE: base_settings(config),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with open(log, "a") as fh:
        done = subprocess.run(command, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"torchrun failed ({done.returncode}); {log} ends:\n{tail}")


def _records(path: Path) -> list[Record]:
    """The records of a JSON-lines file (none when it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _append(path: Path, record: Record) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def run_ranks(config: DemoConfig, endpoint: Endpoint, kind: str, seed: int) -> dict[str, Any]:
    """Fine-tune the base flow with credits from :data:`RANKS` ``torchrun`` ranks; returns the
    run's history (the ranks' training records and the evaluations, in step order), also
    written to the run's ``metrics.jsonl`` at the end."""
    start = time.perf_counter()
    base = load_base(config)
    out = run_dir(config, kind, seed)
    if not config.resume:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    reference = reference_of(kind, seed)
    policy = copy.deepcopy(base.flow)
    # The ranks rewrite metrics.jsonl on every launch: the evaluations are kept beside it.
    evaluations = out / EVALUATIONS
    evals = _records(evaluations) if config.resume else []
    with endpoint.client(cnn_feature_space(base.cnn)) as client:
        upload_reference(client, reference, base, base.pool(config))
        evaluator = evaluator_for(config, base, client, reference)
        if not evals:
            evals.append({"kind": "eval", "step": 0, **evaluator(policy)})
            _append(evaluations, evals[-1])
        for stop in _stops(config):
            if stop <= evals[-1]["step"]:
                continue  # an earlier attempt got this far
            command = torchrun_command(config, endpoint.url, reference, seed, stop, out)
            _launch(command, endpoint.token, config, out / LOG)
            state = torch.load(out / CHECKPOINT, weights_only=True)
            policy.load_state_dict(state["policy"])
            evals.append({"kind": "eval", "step": state["step"], **evaluator(policy)})
            _append(evaluations, evals[-1])
        np.save(out / SAMPLES, evaluator.samples(policy, config.grid).numpy())
    # Each step's training record before its evaluation, as the run loop logs them.
    history = sorted(
        torch.load(out / CHECKPOINT, weights_only=True)["history"] + evals,
        key=lambda r: (r["step"], r["kind"] == "eval"),
    )
    (out / METRICS).write_text("".join(json.dumps(r) + "\n" for r in history))
    return {"kind": kind, "seed": seed, "history": history, "seconds": time.perf_counter() - start}
