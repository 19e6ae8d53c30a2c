"""distreward reward service: distribution-wise (subset-replace Fréchet) rewards over HTTP.

The package root stays import-light on purpose: ``reward_service.engine`` is a subpackage and
must stay importable without FastAPI or Redis. The web application lives in
``reward_service.app`` (``create_app``), its settings in ``reward_service.settings``.
"""

__all__: list[str] = []
