"""``python -m examples.digits.merge_demo``: learn post-hoc merge weights of the flow's snapshots.

The digits flow model saves raw snapshots along its training (:func:`.pretrain.train_flow`,
``<cache>/flow-*/snapshots/iter*.pt``). This demo learns merge weights of those snapshots with
distribution-wise rewards from the reward service and deterministic ODE sampling
(:class:`reward_client.merging.trainer.MergeTrainer`), then compares the learned merge with the
baselines under one evaluation: FID (the service's ``fd`` of CNN features) of ``eval_size`` ODE
samples from noise seed ``eval_seed + seed``, a set no training step, pool or selection touches.

Baselines: the last snapshot; the best single snapshot, chosen on a separate selection noise
set; the uniform average; an EMA-style exponential weighting ``w_i ∝ beta^(T - t_i)`` with the
training EMA's decay per iteration ``beta`` (``t_i`` the snapshot's iteration, ``T`` the last);
and the EMA the pretraining tracked over every iterate (the demo's base model). Learned merges:
``learned_affine`` (sum-to-one weights that may be negative, the demo's learned merge) and
``learned_simplex`` (softmax weights). Writes ``<out>/results.json``, ``<out>/history.json``
and ``<out>/merge.png``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from reward_client import RewardClient
from reward_client.merging.merge import Snapshots, merge_into
from reward_client.merging.policy import PolicyConfig
from reward_client.merging.trainer import MergeConfig, MergeTrainer
from reward_client.training.sources import ServiceRewards

from .base import Base, load_base
from .config import DemoConfig, JobConfig, job_parser, job_settings
from .data import SHAPE
from .evaluation import Evaluator, fixed_noise
from .features import cnn_feature_space
from .merge_report import plot_merge, write_merge_results
from .models import VelocityMLP
from .pretrain import cache_dir
from .runs import upload_reference
from .service import reward_service

__all__ = ["MergeDemoConfig", "baseline_weights", "main", "snapshot_iterations"]

log = logging.getLogger("examples.digits.merge")


@dataclass(frozen=True)
class MergeDemoConfig(JobConfig):
    """Everything a merge-demo run depends on, beyond :class:`JobConfig` (whose ``out`` gets
    ``results.json``, the plot and the service log, whose ``cache`` holds the snapshots too).

    Attributes:
        select_seed: noise seed of the selection set (best single snapshot, the FD-over-steps
            curve); the pool (``pool_size`` ODE samples of the initial merge) is drawn from
            ``pool_seed`` and each seed's evaluation from ``eval_seed`` plus the run seed.
        trainer: merge-run settings (its ``seed`` and ``policy`` are set per run).
        policies: one learned merge per policy, reported as ``learned_<kind>``; the first is
            the demo's learned merge. Their settings were chosen on validation runs (seeds 100
            and 101, hence other training and evaluation noise than the reported seeds).
    """

    out: Path = Path("out/demo-merge")
    select_seed: int = 4_000_037
    pool_size: int = 512
    pool_seed: int = 3_000_017
    eval_seed: int = 5_000_011
    trainer: MergeConfig = field(default_factory=lambda: MergeConfig(progress=False))
    policies: tuple[PolicyConfig, ...] = (
        PolicyConfig(kind="affine", init_std=0.15, lr=0.03),
        PolicyConfig(kind="simplex", init_std=0.5, lr=0.1),
    )

    @property
    def base(self) -> DemoConfig:
        """The digits demo's settings that key the cached networks (the unconditional flow)."""
        return DemoConfig(cache=self.cache).unconditional()


def snapshot_iterations(snapshots: Snapshots) -> list[int]:
    """Training iteration of each snapshot, read from its file name (``iter004000`` -> 4000)."""
    found = [re.fullmatch(r"iter(\d+)", name) for name in snapshots.names]
    if not all(found):
        raise ValueError(f"snapshot names must look like iter000500, got {snapshots.names}")
    return [int(m.group(1)) for m in found if m]


def baseline_weights(iterations: list[int], ema: float) -> dict[str, np.ndarray]:
    """Fixed merges: the last snapshot, the uniform average, the EMA-style weighting.

    EMA-style: ``w_i = beta^(T - t_i) / sum_j beta^(T - t_j)``, the exponential moving average
    of decay ``beta`` per iteration restricted to the snapshots (each standing for the
    iterations since the previous one).
    """
    n = len(iterations)
    ages = iterations[-1] - np.asarray(iterations, dtype=np.float64)
    exponential = ema**ages
    return {
        "last": np.eye(n)[-1],
        "uniform": np.full(n, 1.0 / n),
        "ema_style": exponential / exponential.sum(),
    }


TARGET = "digits-merge-target"
"""Reference holding only the real-digit target: every FID (selection and evaluation) uses it."""


def _metrics(
    evaluator: Evaluator, model: nn.Module, snapshots: Snapshots, weights: np.ndarray
) -> dict[str, float]:
    """The evaluation of the merge of ``snapshots`` with ``weights`` (built in ``model``)."""
    merge_into(model.state_dict(), snapshots, weights)
    return evaluator(model)


def _fids(
    evaluator: Evaluator, model: nn.Module, snapshots: Snapshots, merges: dict[str, np.ndarray]
) -> dict[str, float]:
    """FID of every named merge of ``snapshots`` under one evaluation."""
    return {name: _metrics(evaluator, model, snapshots, w)["fid"] for name, w in merges.items()}


def _model(config: MergeDemoConfig) -> nn.Module:
    """A frozen velocity model of the digits flow's architecture: the merges' output buffer."""
    flow = config.base.flow
    return VelocityMLP(width=flow.width, depth=flow.depth).eval().requires_grad_(False)


def _evaluator(config: MergeDemoConfig, base: Base, client: RewardClient, seed: int) -> Evaluator:
    """FID of ODE samples from the fixed noise set ``seed``, against the real-digit target."""
    noise = fixed_noise(config.eval_size, seed)
    return Evaluator(base.cnn, base.real_features, noise, config.trainer.ode_steps, client, TARGET)


def learn(
    config: MergeDemoConfig,
    base: Base,
    snapshots: Snapshots,
    client: RewardClient,
    policy: PolicyConfig,
    seed: int,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One merge run; returns the learned weights and the run's history.

    The run's reference has the real-digit target and, as its pool, the features of ODE samples
    of the policy's initial mean merge (uniform weights) from the pool noise.
    """
    reference = f"digits-merge-{policy.kind}-seed{seed}"
    trainer = MergeTrainer(
        _model(config), snapshots, base.cnn.features, SHAPE, ServiceRewards(client, reference),
        dataclasses.replace(config.trainer, seed=seed, policy=policy),
        evaluate=_evaluator(config, base, client, config.select_seed),
    )  # fmt: skip
    pool_noise = fixed_noise(config.pool_size, config.pool_seed)
    upload_reference(
        client, reference, base, trainer.features(trainer.policy.mean_weights(), pool_noise)
    )
    history = trainer.run()
    return trainer.policy.mean_weights().numpy(), history


def run_seed(
    config: MergeDemoConfig,
    base: Base,
    snapshots: Snapshots,
    client: RewardClient,
    fixed: dict[str, np.ndarray],
    seed: int,
) -> dict[str, Any]:
    """The merge runs of seed ``seed``, then every method's FID on noise ``eval_seed + seed``."""
    learned, histories = {}, {}
    for policy in config.policies:
        name = f"learned_{policy.kind}"
        learned[name], histories[name] = learn(config, base, snapshots, client, policy, seed)
    eval_seed = config.eval_seed + seed
    used = {r["seed"] for h in histories.values() for r in h if r["kind"] == "train"}
    if eval_seed in used | {config.pool_seed, config.select_seed}:
        raise RuntimeError(f"evaluation noise seed {eval_seed} was used before the evaluation")
    evaluator = _evaluator(config, base, client, eval_seed)
    model = _model(config)
    singles = dict(zip(snapshots.names, np.eye(len(snapshots)), strict=True))
    metrics = {
        name: _metrics(evaluator, model, snapshots, w) for name, w in {**fixed, **learned}.items()
    }
    metrics["training_ema"] = evaluator(base.flow)
    return {
        "seed": seed,
        "eval_seed": eval_seed,
        "fid": {name: m["fid"] for name, m in metrics.items()},
        "diversity": {
            name: {k: m[k] for k in ("class_entropy", "coverage")} for name, m in metrics.items()
        },
        "snapshot_fid": _fids(evaluator, model, snapshots, singles),
        "weights": {name: w.tolist() for name, w in learned.items()},
        "history": histories,
    }


def select_best_single(
    config: MergeDemoConfig, base: Base, snapshots: Snapshots, client: RewardClient
) -> tuple[np.ndarray, dict[str, float]]:
    """One-hot weights of the snapshot with the lowest FID on the selection noise (and all FIDs)."""
    singles = dict(zip(snapshots.names, np.eye(len(snapshots)), strict=True))
    evaluator = _evaluator(config, base, client, config.select_seed)
    fids = _fids(evaluator, _model(config), snapshots, singles)
    return singles[min(fids, key=fids.__getitem__)], fids


def parse_args(argv: list[str] | None = None) -> MergeDemoConfig:
    """Command-line settings over the defaults of :class:`MergeDemoConfig`."""
    default = MergeDemoConfig()
    t = default.trainer
    p = job_parser("python -m examples.digits.merge_demo", __doc__, default)
    p.add_argument("--steps", type=int, default=t.steps)
    p.add_argument("--pool-size", type=int, default=default.pool_size)
    p.add_argument("--group-size", type=int, default=t.group_size)
    p.add_argument("--candidates", type=int, default=t.candidates)
    p.add_argument("--commit-every", type=int, default=t.commit_every, help="0: fixed pool")
    kinds = [policy.kind for policy in default.policies]
    p.add_argument("--kinds", nargs="+", choices=kinds, default=kinds, help="learned merges")
    p.add_argument("--epochs", type=int, default=1, help="policy epochs (1: REINFORCE)")
    args = p.parse_args(argv)
    policies = tuple(
        dataclasses.replace(policy, epochs=args.epochs)
        for policy in default.policies
        if policy.kind in args.kinds
    )
    trainer = dataclasses.replace(
        t,
        steps=args.steps,
        group_size=args.group_size,
        candidates=args.candidates,
        commit_every=args.commit_every,
    )
    return dataclasses.replace(
        default, **job_settings(args), pool_size=args.pool_size, trainer=trainer, policies=policies
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the merge demo; returns what it wrote to ``results.json``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    config = parse_args(argv)
    start = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    base = load_base(config.base)
    flow = config.base.flow
    snapshots = Snapshots.from_dir(cache_dir(config.cache, "flow", flow) / "snapshots", "iter*.pt")
    fixed = baseline_weights(snapshot_iterations(snapshots), flow.ema)
    space = cnn_feature_space(base.cnn)
    with reward_service(config.out / "service.log") as endpoint, endpoint.client(space) as client:
        client.put_target(TARGET, features=base.real_features)  # in the client's space
        fixed["best_single"], selection = select_best_single(config, base, snapshots, client)
        runs = []
        for seed in config.seeds:
            runs.append(run_seed(config, base, snapshots, client, fixed, seed))
            log.info("seed %d: %s", seed, runs[-1]["fid"])
    results = write_merge_results(
        config, snapshots.names, fixed, selection, runs, time.perf_counter() - start
    )
    plot_merge(runs, snapshots.names, results, config.out / "merge.png")
    log.info("wrote %s (%.1f s)", config.out / "results.json", results["wall_seconds"])
    return results


if __name__ == "__main__":
    main()
