"""Support for tests, demos and benchmarks run from a checkout: not part of either package.

* ``launch`` — local processes on loopback: ``python -m reward_service`` as a child process and
  a ``redis-server`` for it to share, a free port, stopping a child.

Importable from the repository root (the demo runs as ``python -m examples.digits`` there, the
benchmarks as ``python -m benchmarks...``; pytest puts the root on the path). The wheel ships
``reward_service`` and ``reward_client`` only.
"""

__all__: list[str] = []
