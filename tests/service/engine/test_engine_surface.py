"""The engine's public surface is pinned: what the service and users may import."""

from __future__ import annotations

from pathlib import Path

import reward_service.engine as engine


def test_exported_names_are_pinned() -> None:
    pinned = """ADVANTAGE_EPSILON BuiltArrays MAX_FEATURE_MAGNITUDE Committed CreditForm
        CreditResult DegeneratePool Method Mode PoolStatistics QuadratureSettings RewardEngine
        RewardResult frechet_distance gaussian_of
        sample_credits symmetric_sqrt trace_sqrt_psd VersionNotHeld"""
    assert sorted(engine.__all__) == sorted(pinned.split())
    for name in engine.__all__:
        assert getattr(engine, name) is not None


def test_the_engine_knows_nothing_of_http_or_storage() -> None:
    forbidden = ("fastapi", "starlette", "redis", "uvicorn", "httpx", "pydantic")
    sources = sorted(Path(engine.__file__).parent.glob("*.py"))
    assert len(sources) >= 5
    for path in sources:
        source = path.read_text()
        for package in forbidden:
            assert f"import {package}" not in source and f"from {package}" not in source, (
                path.name,
                package,
            )
