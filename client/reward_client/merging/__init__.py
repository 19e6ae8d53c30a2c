"""Merge-coefficient RL: learn post-hoc merge weights of saved checkpoints with rewards from a
source, sampling with the deterministic ODE.

- :mod:`.merge` — streamed merging of state dicts, ``theta(w) = sum_i w_i theta_i``
  (:class:`~.merge.Snapshots`, :func:`~.merge.merge_into`); no RL, usable alone.
- :mod:`.policy` — a Gaussian policy over merge coefficients (softmax or sum-to-one affine)
  and its REINFORCE / PPO-clip step.
- :mod:`.trainer` — :class:`~.trainer.MergeTrainer` (one step: coefficient vectors → merges →
  ODE samples → rewards → policy step → commit; the run loop is
  :class:`reward_client.training.loop.Trainer`), :class:`~.trainer.MergeConfig`,
  :class:`~.trainer.MergeSetup`.
- :mod:`.train` — ``python -m reward_client.merging.train``: a merge run against the service.

Samplers, reward sources and the PPO-clip step are shared with the other trainers in
:mod:`reward_client.training`.
"""

__all__: list[str] = []
