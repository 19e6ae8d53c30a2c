"""One router per resource; assembled in :mod:`reward_service.api`."""
