"""GRPO fine-tuning of a flow-matching model with rewards from a source (Flow-GRPO style).

- :mod:`.worker` — :class:`~.worker.TrainerWorker` (one step: SDE samples → features →
  rewards → PPO-clip update → commit; the run loop is :class:`reward_client.training.loop.Trainer`),
  :class:`~.worker.WorkerConfig`, :class:`~.worker.TrainSetup`.
- :mod:`.update` — the policy update over stored SDE trajectories and its settings.
- :mod:`.train` — ``python -m reward_client.grpo.train``: one worker or ``torchrun`` rank
  against the service.

Samplers, reward sources and the PPO-clip step are shared with the other trainers in
:mod:`reward_client.training`.
"""

__all__: list[str] = []
