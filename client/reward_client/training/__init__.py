"""What every trainer shares (torch, plus tqdm): the run loop and the pieces trainers are made of.

- :mod:`.loop` — :class:`~.loop.Trainer`, the one run loop (steps, history, evaluation schedule,
  checkpoints, ``metrics.jsonl`` written as it goes, resume, progress bar), and
  :class:`~.loop.RunConfig`, its settings; also the ``Featurizer`` / ``Evaluator`` types.
- :mod:`.sources` — what a trainer asks of a reward provider: :class:`~.sources.RewardSource`,
  :class:`~.sources.ServiceRewards` (group rewards), :class:`~.sources.CreditRewards` and
  :class:`~.sources.LeaveOneOutCredits` (per-sample distribution-wise credits),
  :class:`~.sources.PerSampleRewards`, and :func:`~.sources.per_prompt` (advantages per prompt);
  numpy only, no torch.
- :mod:`.sde` — samplers of a flow-matching model: the deterministic ODE and the
  marginal-preserving SDE with per-step log-probabilities, unconditional or with a condition
  (class, prompt embedding) per sample.
- :mod:`.ppo` — the PPO-clip loss and optimizer step every policy update is built from.
- :mod:`.distributed` — ``torchrun`` process-group helpers (single-process fallback).
- :mod:`.cli` — what every trainer's command line shares (``--setup`` loading, the service
  connection, the run-loop options).

The trainers live beside this package: :mod:`reward_client.grpo` (GRPO over the SDE sampler)
and :mod:`reward_client.merging` (merge-coefficient RL). To add a trainer, make a package like
them: a config dataclass that subclasses :class:`~.loop.RunConfig` with your settings, a
:class:`~.loop.Trainer` subclass whose ``update()`` samples, scores with ``self.source``,
updates the policy, commits when ``self.commit_due`` and returns the step's metrics (with
``reward_mean`` and ``approx_kl``), and a ``train.py`` command line built from :mod:`.cli`.

This ``__init__`` imports nothing, so ``reward_client.training.sources`` loads without torch.
"""

__all__: list[str] = []
