"""``python -m reward_service`` (or ``distreward-service``): serve with uvicorn."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from .app import create_app
from .settings import get_settings

__all__ = ["log_binding", "main"]


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def log_binding(host: str, port: int) -> None:
    """Say where the service listens: loopback (the default) at INFO, anything else as a
    WARNING, since the service speaks plain HTTP and expects TLS to end in front of it."""
    log = logging.getLogger(__name__)
    if host in LOOPBACK_HOSTS:
        log.info(
            "listening on %s:%d (loopback only; set DISTREWARD_HOST to serve beyond)", host, port
        )
    else:
        log.warning("listening on %s:%d, beyond loopback: plain HTTP, put TLS in front", host, port)


def main() -> None:
    try:
        settings = get_settings()
    except ValidationError as exc:
        message = "; ".join(str(error["msg"]) for error in exc.errors(include_url=False))
        sys.exit(f"distreward: invalid settings: {message}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log_binding(settings.host, settings.port)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
