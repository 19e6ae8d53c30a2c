"""The service tests' fixtures live in ``service_fixtures`` (shared with tests/hardening)."""

from service_fixtures import (  # noqa: F401  (fixtures are found by name)
    api,
    redis_server,
    redis_url,
    rng,
    service_pair_factory,
    settings,
    store_kind,
)
