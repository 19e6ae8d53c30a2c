"""``python -m reward_service`` (or ``distreward-service``): serve with uvicorn."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from .app import create_app
from .settings import get_settings

__all__ = ["main"]


def main() -> None:
    try:
        settings = get_settings()
    except ValidationError as exc:
        message = "; ".join(str(error["msg"]) for error in exc.errors(include_url=False))
        sys.exit(f"distreward: invalid settings: {message}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger(__name__).warning("listening on %s, beyond loopback", settings.host)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
